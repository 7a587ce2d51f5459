"""The ``augment`` section: where candidate pairs come from (backtranslation of corpus segments, or
Self-Instruct's generated tasks) and the settings of each source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .checks import check_rejection
from .parse import Source, _f, fraction, positive

# Self-Instruct's keyword filter: tasks a language model cannot do (Wang et al. 2022).
SELF_INSTRUCT_KEYWORDS = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
                          "maps", "draw", "plot", "go to"]


@dataclass
class AugmentConfig:
    source: Literal["backtranslation", "self_instruct"] = _f(
        "backtranslation", "Where candidates come from: `backtranslation` (the backward model writes an instruction "
                           "for each corpus segment) or `self_instruct` (the base model writes new tasks from the "
                           "seed tasks, then their instances; Wang et al. 2022; no corpus).")
    temperature: float = _f(0.7, "Sampling temperature for the backward model (paper: 0.7).")
    top_p: float = _f(0.9, "Nucleus sampling top_p (paper: 0.9).")
    max_new_tokens: int = _f(128, "Longest generated instruction, in tokens.")
    min_instruction_chars: int = _f(3, "Shorter instructions are dropped as empty.")
    max_instruction_chars: int = _f(2000, "Longer instructions are dropped as degenerate.")
    max_repeated_ngram_fraction: float = _f(
        0.5, "Drop instructions whose word 3-grams are repeated more than this fraction (degenerate)."
    )
    keep_truncated: bool = _f(
        False, "Keep instructions that ran out of max_new_tokens as candidates (they are flagged, `truncated`, "
               "and counted either way); false rejects them as `truncated`.")
    constraint: Optional[str] = _f(
        None, "backtranslation: the format the backward model's instruction must obey, enforced while decoding "
              "and checked after (docs/constraints.md): `builtin:instruction-line`, `regex:...`, `json:FILE`, "
              "`choice:A|B`, `grammar:FILE.gbnf`.")
    validator: Optional[str] = _f(
        None, "backtranslation: `package.module:function` called on each generated instruction, true to accept "
              "(rejection sampling with max_tries). USER CODE THE RECIPE TRUSTS: it is imported and run.")
    max_tries: int = _f(1, "backtranslation: attempts per segment until the instruction passes augment.constraint "
                           "and augment.validator; one that never passes is rejected as `invalid` (kept, counted).")

    # self_instruct: the published settings (Wang et al. 2022) are the defaults.
    target_tasks: int = _f(1000, "self_instruct: rounds of task generation go on until the pool holds this many "
                                 "machine-written tasks (the paper generated 52k).")
    prompts_per_round: int = _f(32, "self_instruct: task prompts per round; each round's prompts see the pool as the "
                                    "rounds before left it (the unit of resume).")
    max_idle_rounds: int = _f(5, "self_instruct: stop early when this many rounds in a row add no task.")
    prompt_instructions: int = _f(8, "self_instruct: in-context instructions per task prompt (paper: 8).")
    prompt_machine_instructions: int = _f(
        2, "self_instruct: of those, machine-written ones once the pool has them (paper: 2; the rest are human seed).")
    task_temperature: float = _f(0.7, "self_instruct: task generation temperature (paper: 0.7).")
    task_top_p: float = _f(0.5, "self_instruct: task generation top_p (paper: 0.5).")
    task_presence_penalty: float = _f(2.0, "self_instruct: task generation presence penalty (paper: 2).")
    task_max_new_tokens: int = _f(1024, "self_instruct: longest task-list continuation, in tokens (paper: 1024).")
    min_task_words: int = _f(3, "self_instruct: tasks with fewer words are dropped.")
    max_task_words: int = _f(150, "self_instruct: tasks with more words are dropped (paper: 150).")
    rouge_threshold: float = _f(0.7, "self_instruct: a task whose ROUGE-L F with any task already in the pool is "
                                     "above this is dropped (paper: 0.7).")
    task_keywords: list[str] = _f(SELF_INSTRUCT_KEYWORDS, "self_instruct: tasks naming one of these words (whole "
                                                          "words, any case) are dropped: a language model cannot do "
                                                          "them.")
    keep_unfinished: bool = _f(False, "self_instruct: keep what a generation that ran out of tokens before a stop "
                                      "sequence wrote (the paper drops such a task list whole, and the last instance "
                                      "of such an instance list; the tiny recipe keeps them: its random model never "
                                      "reaches a stop sequence).")
    task_constraint: Optional[str] = _f(
        None, "self_instruct: the format of the task-list continuation, enforced while decoding and checked after "
              "(docs/constraints.md), e.g. `builtin:task-list`.")
    task_validator: Optional[str] = _f(
        None, "self_instruct: `package.module:function` called on each task-list continuation's text, true to "
              "accept (rejection sampling with task_max_tries). USER CODE THE RECIPE TRUSTS: it is imported and run.")
    task_max_tries: int = _f(1, "self_instruct: attempts per task-list prompt until its continuation passes "
                                "augment.task_constraint and augment.task_validator; one that never passes is "
                                "parsed as it is, counted in the tasks stage's checks.")
    instance_presence_penalty: float = _f(1.5, "self_instruct: instance generation presence penalty (paper: 1.5; "
                                               "greedy).")
    instance_max_new_tokens: int = _f(350, "self_instruct: longest instance generation, input-first tasks (paper: "
                                           "350).")
    classification_max_new_tokens: int = _f(300, "self_instruct: longest instance generation, output-first "
                                                 "(classification) tasks (paper: 300).")
    instance_constraint: Optional[str] = _f(
        None, "self_instruct: the format of each task's instance generation (both kinds: input-first and "
              "output-first), enforced while decoding and checked after (docs/constraints.md): `regex:...`, "
              "`json:FILE`, `grammar:FILE`, `choice:a|b`.")
    instance_validator: Optional[str] = _f(
        None, "self_instruct: `package.module:function` called on each instance generation's text, true to accept. "
              "Instances are decoded greedily (no retries): a generation that fails the constraint or the validator "
              "has its instances rejected as `invalid` (kept in augment/rejected, counted). USER CODE THE RECIPE "
              "TRUSTS: it is imported and run.")
    max_instances: int = _f(5, "self_instruct: instances kept per task, sampled when there are more (paper: 5).")
    max_instance_chars: int = _f(3000, "self_instruct: instances whose input and output together are longer are "
                                       "dropped.")
    bare_output_instances: bool = _f(False, "self_instruct: an input-first generation with no Input:/Output: labels "
                                            "becomes one instance with that text as output (the paper's parser drops "
                                            "it; the tiny recipe keeps it).")

    def validate(self, where: Source) -> None:
        if self.temperature < 0:
            raise where.invalid("augment.temperature", f"must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise where.invalid("augment.top_p", f"must be in (0, 1], got {self.top_p}")
        positive(where, "augment.max_new_tokens", self.max_new_tokens)
        fraction(where, "augment.max_repeated_ngram_fraction", self.max_repeated_ngram_fraction)
        for key in ("target_tasks", "prompts_per_round", "max_idle_rounds", "prompt_instructions",
                    "task_max_new_tokens", "min_task_words", "max_task_words", "instance_max_new_tokens",
                    "classification_max_new_tokens", "max_instances", "max_instance_chars"):
            positive(where, f"augment.{key}", getattr(self, key))
        if not 0 <= self.prompt_machine_instructions <= self.prompt_instructions:
            raise where.invalid("augment.prompt_machine_instructions",
                                f"must be between 0 and augment.prompt_instructions ({self.prompt_instructions}), "
                                f"got {self.prompt_machine_instructions}")
        if self.task_temperature < 0:
            raise where.invalid("augment.task_temperature", f"must be >= 0, got {self.task_temperature}")
        if not 0 < self.task_top_p <= 1:
            raise where.invalid("augment.task_top_p", f"must be in (0, 1], got {self.task_top_p}")
        fraction(where, "augment.rouge_threshold", self.rouge_threshold)
        check_rejection(where, "augment", self.constraint, self.validator, self.max_tries, self.max_new_tokens,
                        "temperature", self.temperature)
        check_rejection(where, "augment", self.task_constraint, self.task_validator, self.task_max_tries,
                        self.task_max_new_tokens, "task_temperature", self.task_temperature, prefix="task_")
        check_rejection(where, "augment", self.instance_constraint, self.instance_validator, 1,  # greedy: one try
                        max(self.instance_max_new_tokens, self.classification_max_new_tokens), "temperature", 0.0,
                        prefix="instance_")
        if self.max_task_words < self.min_task_words:
            raise where.invalid("augment.max_task_words", f"({self.max_task_words}) is below "
                                                          f"'augment.min_task_words' ({self.min_task_words})")

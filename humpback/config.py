"""Typed configuration: one dataclass per concern, a YAML recipe whose keys are the field names,
and dotted ``key=value`` overrides from the command line. One parsing path, strict keys.

Every error names the file (or ``command line``) and the dotted key.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml

from .errors import ConfigError
from .prompts import EVAL_SYSTEM_PROMPT, SEED_SYSTEM_PROMPT

log = logging.getLogger(__name__)
# A threshold above this on the expected score (a mean over P("1".."5")) keeps almost nothing:
# expected >= t needs P("5") >= t - 4 even with all the rest on "4".
EXPECTED_THRESHOLD_WARN = 4.5


def _f(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field whose help text documents the recipe key."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _section(cls: type, help: str) -> Any:
    """A config section that a recipe may leave out (it then takes its defaults)."""
    return field(default_factory=cls, metadata={"help": help})


@dataclass
class SeedConfig:
    path: Optional[str] = _f(None, "JSON/JSONL/Parquet file, folder or URL of seed pairs (oasst: message rows "
                                   "or the official *.trees.jsonl export).")
    dataset: Optional[str] = _f(None, "A `datasets` hub id or local dataset folder, read with load_dataset.")
    dataset_config: Optional[str] = _f(None, "The dataset's configuration name, if it has several.")
    split: str = _f("train", "Split of `seed.dataset` to read.")
    format: Literal["auto", "messages", "alpaca", "oasst", "self_instruct"] = _f(
        "auto", "Seed record format; `auto` detects it from the first record's keys."
    )
    language: Optional[str] = _f(
        "en", "oasst only: keep trees whose prompt and reply are in this language (null keeps all).")
    max_examples: Optional[int] = _f(None, "Keep at most this many seed pairs (the first ones).")
    sample: Optional[int] = _f(
        None, "Keep this many seed pairs drawn at random (seeded by `random_seed`) from all that were "
              "selected (paper: 3,200 from oasst1).")
    keep_duplicates: bool = _f(
        False, "Keep pairs that repeat an earlier pair's instruction and output (ids numbered #2, #3...); "
               "by default each is kept once and the duplicates are counted.")
    skip_invalid: bool = _f(False, "Skip (and count) invalid records instead of stopping with an error.")
    heldout: float = _f(
        0.05, "Seed instructions (with their pairs) kept out of every training mixture for evaluation: a fraction "
              "below 1, or a count; 0: none.")

    def validate(self, where: "Source") -> None:
        if (self.path is None) == (self.dataset is None):
            raise ConfigError(f"{where.of('seed.path', 'seed.dataset')}: set exactly one of 'seed.path' and "
                              "'seed.dataset'")
        _positive(where, "seed.max_examples", self.max_examples, allow_none=True)
        _positive(where, "seed.sample", self.sample, allow_none=True)
        if self.sample is not None and self.max_examples is not None:
            raise ConfigError(f"{where.of('seed.sample', 'seed.max_examples')}: set at most one of 'seed.sample' "
                              f"(drawn at random) and 'seed.max_examples' (the first ones)")
        if self.heldout < 0 or (self.heldout >= 1 and not float(self.heldout).is_integer()):
            raise ConfigError(f"{where.of('seed.heldout')}: 'seed.heldout' must be a fraction in [0, 1) or a whole "
                              f"count, got {self.heldout!r}")


@dataclass
class CorpusConfig:
    path: Optional[str] = _f(
        None, "File, folder or URL (fsspec) of unlabelled documents: JSONL/JSON/Parquet, text, HTML pages, "
              "WARC(.gz) web archives, or a .paths(.gz) list of them (Common Crawl's warc.paths.gz).")
    dataset: Optional[str] = _f(None, "A `datasets` hub id or local dataset folder, streamed.")
    dataset_config: Optional[str] = _f(None, "The dataset's configuration name, if it has several.")
    split: str = _f("train", "Split of `corpus.dataset` to stream.")
    text_field: str = _f("text", "Field that holds a document's text (JSON, Parquet, datasets).")
    html_field: Optional[str] = _f(
        None, "Field that holds a document's raw HTML instead (JSON, Parquet, datasets): pages are cut at "
              "their <h1>-<h6> headers. null: records hold text (`corpus.text_field`).")
    language: Optional[str] = _f(
        None, "Keep only segments in this language (ISO 639-1, e.g. `en`; paper: English), identified with "
              "py3langid, whose model ships with it. null keeps every language.")
    require_header: bool = _f(
        False, "Drop text that no header precedes (the paper's segments all follow an HTML header).")
    max_documents: Optional[int] = _f(None, "Read at most this many documents.")
    max_segments: Optional[int] = _f(None, "Keep at most this many segments (the first that survive).")
    min_chars: int = _f(600, "Drop segments shorter than this (paper: 600).")
    max_chars: int = _f(3000, "Longer sections are split at paragraphs; longer pieces dropped (paper: 3,000).")
    repetition_ngram: int = _f(3, "Word n-gram size for the repeated-sentence filter.")
    repetition_threshold: float = _f(0.8, "Drop a segment if two of its sentences have n-gram Jaccard >= this.")
    boilerplate_threshold: float = _f(0.3, "Drop a segment if this fraction of its lines is boilerplate.")
    near_dedup: bool = _f(True, "Drop near-duplicate segments (MinHash over word 5-grams).")
    near_dedup_threshold: float = _f(0.8, "Estimated Jaccard similarity at which two segments are duplicates.")
    drop_seed_overlap: bool = _f(True, "Drop segments that duplicate (or nearly) a seed output.")
    skip_invalid: bool = _f(False, "Skip (and count) invalid records instead of stopping with an error.")

    def validate(self, where: "Source") -> None:
        if (self.path is None) == (self.dataset is None):
            raise ConfigError(f"{where.of('corpus.path', 'corpus.dataset')}: set exactly one of 'corpus.path' and "
                              "'corpus.dataset'")
        _positive(where, "corpus.max_documents", self.max_documents, allow_none=True)
        _positive(where, "corpus.max_segments", self.max_segments, allow_none=True)
        _positive(where, "corpus.min_chars", self.min_chars)
        if self.max_chars < self.min_chars:
            raise ConfigError(f"{where.of('corpus.max_chars')}: 'corpus.max_chars' ({self.max_chars}) is below "
                              f"'corpus.min_chars' ({self.min_chars})")
        _positive(where, "corpus.repetition_ngram", self.repetition_ngram)
        for key in ("repetition_threshold", "boilerplate_threshold", "near_dedup_threshold"):
            _fraction(where, f"corpus.{key}", getattr(self, key))


@dataclass
class GenerationConfig:
    backend: Literal["hf", "vllm", "openai"] = _f(
        "hf",
        "`hf`: transformers, in process; `vllm`: offline vLLM on GPUs (pip install humpback[vllm]); "
        "`openai`: an OpenAI-compatible server at `generation.api_base`.",
    )
    batch_size: int = _f(16, "Prompts per generation batch.")
    sort_by_length: bool = _f(True, "Batch prompts of similar length together to cut padding.")
    max_prompt_tokens: int = _f(2048, "Prompts longer than this (in tokens) are cut from the left.")
    device: str = _f("auto", "`auto` (cuda if available, else cpu), `cpu`, `cuda`, `cuda:1`, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "`auto`: bfloat16 on a GPU that supports it, else float32."
    )
    tensor_parallel_size: int = _f(1, "vllm: GPUs the model is split over (tensor parallelism).")
    gpu_memory_utilization: float = _f(0.9, "vllm: fraction of GPU memory for weights and KV cache.")
    api_base: Optional[str] = _f(
        None, "openai: the server's base URL, up to and including /v1 (e.g. http://127.0.0.1:8000/v1)."
    )
    served_model_name: Optional[str] = _f(
        None, "openai: one model name sent in every request. The loop needs a model per stage (backward, M0, "
              "M_K), so a run that would send several to this one name is refused unless "
              "generation.share_served_model is true; prefer generation.served_models."
    )
    served_models: dict[str, str] = _f(
        {}, "openai: the name the server serves each model of the run under, by label: base, backward, m0, "
            "iter_1, ..., judge (curate.judge); e.g. vLLM --enable-lora --lora-modules backward=RUN/models/backward. "
            "A model without a name goes by its adapter's path (--lora-modules PATH=PATH), the base by its id."
    )
    load_adapters: bool = _f(
        False, "openai: register each adapter with the server when a stage first needs it (vLLM's "
               "/v1/load_lora_adapter; start the server with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and "
               "--enable-lora), under <label>-<adapter hash>; the server must see the run folder's path."
    )
    share_served_model: bool = _f(
        False, "openai: allow generation.served_model_name to stand in for several models of the run (loudly "
               "warned: backtranslation then runs without each stage's own adapter)."
    )
    api_key_env: str = _f(
        "OPENAI_API_KEY", "openai: environment variable holding the API key (sent if set; never stored)."
    )
    concurrency: int = _f(8, "openai: requests in flight at once.")
    timeout_s: float = _f(600.0, "openai: socket timeout of one request, in seconds.")
    max_retries: int = _f(
        5, "openai: retries of a request on 429, 5xx, timeouts and connection errors (exponential backoff)."
    )

    def validate(self, where: "Source") -> None:
        _positive(where, "generation.batch_size", self.batch_size)
        _positive(where, "generation.max_prompt_tokens", self.max_prompt_tokens)
        _positive(where, "generation.tensor_parallel_size", self.tensor_parallel_size)
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"{where.of('generation.gpu_memory_utilization')}: 'generation.gpu_memory_utilization' "
                              f"must be in (0, 1], got {self.gpu_memory_utilization!r}")
        _positive(where, "generation.concurrency", self.concurrency)
        _positive(where, "generation.timeout_s", self.timeout_s)
        if self.max_retries < 0:
            raise ConfigError(f"{where.of('generation.max_retries')}: 'generation.max_retries' must be >= 0, got "
                              f"{self.max_retries!r}")
        if self.backend == "openai" and not self.api_base:
            raise ConfigError(f"{where.of('generation.backend', 'generation.api_base')}: generation.backend 'openai' "
                              "needs 'generation.api_base' "
                              f"(e.g. http://127.0.0.1:8000/v1)")
        if self.api_base is not None and not self.api_base.startswith(("http://", "https://")):
            raise ConfigError(f"{where.of('generation.api_base')}: 'generation.api_base' must start with http:// or "
                              f"https://, got {self.api_base!r}")


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
    instance_presence_penalty: float = _f(1.5, "self_instruct: instance generation presence penalty (paper: 1.5; "
                                               "greedy).")
    instance_max_new_tokens: int = _f(350, "self_instruct: longest instance generation, input-first tasks (paper: "
                                           "350).")
    classification_max_new_tokens: int = _f(300, "self_instruct: longest instance generation, output-first "
                                                 "(classification) tasks (paper: 300).")
    max_instances: int = _f(5, "self_instruct: instances kept per task, sampled when there are more (paper: 5).")
    max_instance_chars: int = _f(3000, "self_instruct: instances whose input and output together are longer are "
                                       "dropped.")
    bare_output_instances: bool = _f(False, "self_instruct: an input-first generation with no Input:/Output: labels "
                                            "becomes one instance with that text as output (the paper's parser drops "
                                            "it; the tiny recipe keeps it).")

    def validate(self, where: "Source") -> None:
        if self.temperature < 0:
            raise ConfigError(f"{where.of('augment.temperature')}: 'augment.temperature' must be >= 0, got "
                              f"{self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{where.of('augment.top_p')}: 'augment.top_p' must be in (0, 1], got {self.top_p}")
        _positive(where, "augment.max_new_tokens", self.max_new_tokens)
        _fraction(where, "augment.max_repeated_ngram_fraction", self.max_repeated_ngram_fraction)
        for key in ("target_tasks", "prompts_per_round", "max_idle_rounds", "prompt_instructions",
                    "task_max_new_tokens", "min_task_words", "max_task_words", "instance_max_new_tokens",
                    "classification_max_new_tokens",
                    "max_instances", "max_instance_chars"):
            _positive(where, f"augment.{key}", getattr(self, key))
        if not 0 <= self.prompt_machine_instructions <= self.prompt_instructions:
            raise ConfigError(f"{where.of('augment.prompt_machine_instructions')}: "
                              "'augment.prompt_machine_instructions' "
                              f"must be between 0 and augment.prompt_instructions ({self.prompt_instructions}), "
                              f"got {self.prompt_machine_instructions}")
        if self.task_temperature < 0:
            raise ConfigError(f"{where.of('augment.task_temperature')}: 'augment.task_temperature' must be >= 0, "
                              f"got {self.task_temperature}")
        if not 0 < self.task_top_p <= 1:
            raise ConfigError(f"{where.of('augment.task_top_p')}: 'augment.task_top_p' must be in (0, 1], got "
                              f"{self.task_top_p}")
        _fraction(where, "augment.rouge_threshold", self.rouge_threshold)
        _check_checks(where, "augment", self.constraint, self.validator, self.max_tries, self.max_new_tokens,
                      "temperature", self.temperature)
        if self.task_constraint is not None:
            _check_checks(where, "augment", self.task_constraint, None, 1, self.task_max_new_tokens,
                          "task_temperature", self.task_temperature, key="task_constraint")
        if self.max_task_words < self.min_task_words:
            raise ConfigError(f"{where.of('augment.max_task_words')}: 'augment.max_task_words' "
                              f"({self.max_task_words}) "
                              f"is below 'augment.min_task_words' ({self.min_task_words})")


@dataclass
class CurateConfig:
    judge_kind: Literal["rating", "rubric", "likelihood", "verifier"] = _f(
        "rating",
        "`rating`: the paper's 5-point prompt (see `curate.mode`); `rubric`: the weave rubric judge, one yes/no "
        "question per principle read from the judge's logits (see `curate.rubric`); `likelihood`: the judging "
        "model's own log-likelihood of the output given the instruction (see `curate.likelihood`); `verifier`: "
        "the Python function `curate.verifier` names checks each pair.",
    )
    compare_judges: list[str] = _f(
        [], "Other judges (rating, rubric, likelihood, verifier) that score the same candidates and dev set with "
            "the same model, beside `curate.judge_kind`, so that the judges can be compared (health, dev AUC, rank "
            "agreement): recorded in iter_K/compare/, never used to select. Each uses its own curate settings.")
    mode: Literal["generate", "logits", "both"] = _f(
        "generate",
        "rating judge: `generate`: decode the reasoning and parse 'Score: N'; `logits`: read P('1'..'5') after "
        "'Score:' in one forward pass; `both`: record the two scores per pair and log their agreement.",
    )
    likelihood: Literal["mean_logprob", "ifd"] = _f(
        "mean_logprob",
        "likelihood judge: `mean_logprob`: mean log-probability per token of the output given the instruction "
        "(one forward pass per pair); `ifd`: the instruction-following difficulty ratio, loss with the "
        "instruction over loss without (Cherry LLM), kept lowest first (two forward passes per pair).",
    )
    verifier: Optional[str] = _f(
        None, "verifier judge: `package.module:function` called on each pair ({candidate_id, instruction, "
              "output}) returning a number, higher is better. USER CODE THE RECIPE TRUSTS: it is imported and run.")
    select: Literal["threshold", "top_fraction", "top_k"] = _f(
        "threshold", "Keep pairs scoring >= threshold, or the best top_fraction / top_k of the pool.")
    threshold: float = _f(5, "select=threshold: keep pairs whose score is >= this (paper: 5, the A5 set).")
    top_fraction: float = _f(0.1, "select=top_fraction: keep this fraction of the pool, best first.")
    top_k: int = _f(1000, "select=top_k: keep this many pairs, best first.")
    select_on: Literal["auto", "generated", "argmax", "expected", "value"] = _f(
        "auto", "The score selection uses: the generated 'Score: N', the most likely or the expected score "
                "from P('1'..'5'), or the judge's `value` column. `auto`: generated in generate and both modes, "
                "argmax in logits mode; value for the likelihood and verifier judges.")
    max_new_tokens: int = _f(256, "generate mode: longest judge output, in tokens.")
    temperature: float = _f(0.0, "generate mode: judge sampling temperature (0 = greedy).")
    system_prompt: Optional[str] = _f(SEED_SYSTEM_PROMPT, "System prompt given to the judge (null: none).")
    judge: Optional[str] = _f(
        None, "An outside judge (hub id or local path) instead of the run's own model K-1 in every iteration."
    )
    dev_set: Optional[str] = _f(
        None, "A labelled file (JSON/JSONL/Parquet) of instruction, output, label rows (label good/bad, or a gold "
              "score 1-5): every iteration's judge scores it and the selection's precision, recall and F1 on it "
              "are reported.")
    dev_positive_score: int = _f(5, "dev_set with gold 1-5 labels: a pair is a positive when its label is at least "
                                    "this.")
    review: bool = _f(
        False, "Honour the run's review decisions (RUN_DIR/review/decisions.parquet, `humpback review`) in selection: "
               "a rejected pair is dropped, an edited instruction replaces the generated one; the decisions' hash "
               "joins the select stage's key. `replay` and `export` turn it on when the run has decisions "
               "(--no-review: off).")
    review_force_accepted: bool = _f(
        False, "With curate.review: also keep the pairs a reviewer accepted or edited that the judge did not select.")
    rubric: Optional[str] = _f(
        None, "rubric judge: a rubric in the weave layout (==[Principle: ...; Weight: ...; Answer: Yes]==), as a "
              "file, a `datasets` id or local dataset folder, or null for builtin:rubric-paper (the paper's "
              "5-point criteria as yes/no questions).")
    rubric_field: str = _f("text", "rubric judge: the dataset field that holds the rubric text (rows joined in "
                                   "order).")
    rubric_combine: Literal["mean", "softmin"] = _f(
        "mean", "rubric judge: a pair's score from its principles' signed log-odds: the weighted mean, or a "
                "weighted soft minimum (close to the worst principle).")
    rubric_temperature: float = _f(1.0, "rubric judge, softmin: the temperature (small: the minimum; large: the "
                                        "mean).")
    constraint: Optional[str] = _f(
        None, "rating judge, generate and both modes: the format its judgement must obey, enforced while decoding "
              "and checked after (docs/constraints.md), e.g. `builtin:score` (reasoning, then 'Score: N').")
    validator: Optional[str] = _f(
        None, "rating judge, generate and both modes: `package.module:function` called on each judgement, true to "
              "accept (rejection sampling with max_tries). USER CODE THE RECIPE TRUSTS: it is imported and run.")
    max_tries: int = _f(1, "rating judge: attempts per pair until the judgement passes curate.constraint and "
                           "curate.validator (more than 1 needs curate.temperature > 0); one that never passes "
                           "keeps its last attempt, counted.")

    def validate(self, where: "Source") -> None:
        kinds = ("rating", "rubric", "likelihood", "verifier")
        for kind in self.compare_judges:
            if kind not in kinds:
                raise ConfigError(f"{where.of('curate.compare_judges')}: 'curate.compare_judges' names {kind!r}, "
                                  f"which is not a judge (one of {', '.join(kinds)})")
        if len(set(self.compare_judges)) != len(self.compare_judges):
            raise ConfigError(f"{where.of('curate.compare_judges')}: 'curate.compare_judges' names a judge twice")
        if self.judge_kind in self.compare_judges:
            raise ConfigError(f"{where.of('curate.compare_judges', 'curate.judge_kind')}: 'curate.compare_judges' "
                              f"names {self.judge_kind!r}, the judge that already selects (curate.judge_kind)")
        if "verifier" in self.compare_judges and self.verifier is None:
            raise ConfigError(f"{where.of('curate.compare_judges', 'curate.verifier')}: the verifier judge in "
                              f"'curate.compare_judges' needs 'curate.verifier' (package.module:function)")
        if self.judge_kind == "rubric" and not self.rubric_temperature > 0:
            raise ConfigError(f"{where.of('curate.rubric_temperature')}: 'curate.rubric_temperature' must be > 0")
        if self.judge_kind == "rating" and not 1 <= self.threshold <= 5:
            raise ConfigError(f"{where.of('curate.threshold')}: 'curate.threshold' must be between 1 and 5, got "
                              f"{self.threshold}")
        if self.judge_kind == "likelihood" and self.select == "threshold" and self.threshold > 0:
            raise ConfigError(f"{where.of('curate.threshold', 'curate.judge_kind')}: 'curate.threshold' is compared "
                              f"with a mean log-probability (or -IFD) for the likelihood judge, so it must be <= 0, "
                              f"got {self.threshold}; or use curate.select top_fraction / top_k")
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"{where.of('curate.top_fraction')}: 'curate.top_fraction' must be in (0, 1], got "
                              f"{self.top_fraction}")
        _positive(where, "curate.top_k", self.top_k)
        if self.judge_kind != "rating" and self.select_on in ("generated", "argmax", "expected"):
            raise ConfigError(f"{where.of('curate.select_on', 'curate.judge_kind')}: 'curate.select_on: "
                              f"{self.select_on}' is a rating-judge score; the {self.judge_kind} judge selects on "
                              f"its value (curate.select_on auto or value)")
        if self.judge_kind == "rating" and self.mode == "generate" and self.select_on in ("argmax", "expected"):
            raise ConfigError(f"{where.of('curate.select_on', 'curate.mode')}: 'curate.select_on: {self.select_on}' "
                              "needs curate.mode logits or both")
        if self.judge_kind == "rating" and self.mode == "logits" and self.select_on == "generated":
            raise ConfigError(f"{where.of('curate.select_on', 'curate.mode')}: 'curate.select_on: generated' needs "
                              "curate.mode generate or both")
        if self.judge_kind == "verifier":
            if self.verifier is None:
                raise ConfigError(f"{where.of('curate.judge_kind', 'curate.verifier')}: curate.judge_kind 'verifier' "
                                  f"needs 'curate.verifier' (package.module:function)")
            if self.judge is not None:
                raise ConfigError(f"{where.of('curate.judge', 'curate.judge_kind')}: 'curate.judge' names a model, "
                                  f"but the verifier judge uses none")
        if self.verifier is not None:
            from .judges.verifier import check_path

            try:
                check_path(self.verifier)
            except ConfigError as e:
                raise ConfigError(f"{where.of('curate.verifier')}: {e}") from None
        _positive(where, "curate.max_new_tokens", self.max_new_tokens)
        if self.temperature < 0:
            raise ConfigError(f"{where.of('curate.temperature')}: 'curate.temperature' must be >= 0, got "
                              f"{self.temperature}")
        if self.review_force_accepted and not self.review:
            raise ConfigError(f"{where.of('curate.review_force_accepted', 'curate.review')}: "
                              f"'curate.review_force_accepted' needs curate.review true")
        if (self.constraint or self.validator or self.max_tries != 1) and not (
                self.judge_kind == "rating" and self.mode in ("generate", "both")):
            raise ConfigError(f"{where.of('curate.constraint', 'curate.judge_kind', 'curate.mode')}: "
                              f"'curate.constraint', 'curate.validator' and 'curate.max_tries' apply to the rating "
                              f"judge's generated judgements (curate.judge_kind rating, curate.mode generate or both)")
        _check_checks(where, "curate", self.constraint, self.validator, self.max_tries, self.max_new_tokens,
                      "temperature", self.temperature)
        if not 1 <= self.dev_positive_score <= 5:
            raise ConfigError(f"{where.of('curate.dev_positive_score')}: 'curate.dev_positive_score' must be between "
                              f"1 and 5, got {self.dev_positive_score}")

    def score_field(self) -> str:
        """The scores column that selection reads."""
        on = self.select_on
        if on == "auto":
            if self.judge_kind != "rating":
                return "value"
            on = "argmax" if self.mode == "logits" else "generated"
        return {"generated": "score", "argmax": "logits_score", "expected": "expected_score", "value": "value"}[on]

    def as_judge(self, kind: str) -> "CurateConfig":
        """These settings with ``kind`` as the judge (a comparison judge of ``compare_judges``)."""
        return dataclasses.replace(self, judge_kind=kind, select_on="auto", compare_judges=[])

    def scoring_settings(self) -> dict:
        """What a judge's scores depend on (the score stage's key; replay re-scores when it changes)."""
        keys = {"rating": ("mode", "max_new_tokens", "temperature", "system_prompt"),
                "rubric": ("rubric", "rubric_field", "rubric_combine", "rubric_temperature", "system_prompt"),
                "likelihood": ("likelihood", "system_prompt"), "verifier": ("verifier",)}[self.judge_kind]
        # in the key when set (older runs keep theirs)
        checks = {"constraint": None, "validator": None, "max_tries": 1}
        set_checks = {k: getattr(self, k) for k, default in checks.items()
                      if self.judge_kind == "rating" and getattr(self, k) != default}
        return {"judge_kind": self.judge_kind, **{k: getattr(self, k) for k in keys}, **set_checks}


@dataclass
class EvalConfig:
    enabled: bool = _f(True, "Evaluate the base model, M0 and every M_K (held-out loss, answers, pairwise win rate).")
    prompts: Optional[str] = _f(
        None, "Eval prompt set: a local JSON/JSONL/Parquet file or folder, or a `datasets` id, whose records have "
              "`instruction` (and optionally `output`, `reference`); null: the held-out seed instructions.")
    prompts_config: Optional[str] = _f(None, "The `eval.prompts` dataset's configuration name, if it has several.")
    prompts_split: str = _f("train", "Split of the `eval.prompts` dataset.")
    max_prompts: Optional[int] = _f(None, "Answer at most this many eval prompts (the first ones).")
    system_prompt: Optional[str] = _f(EVAL_SYSTEM_PROMPT, "System prompt of the answers (paper: both tags; null: "
                                                          "none).")
    temperature: float = _f(0.0, "Answer sampling temperature (0 = greedy).")
    top_p: float = _f(1.0, "Answer nucleus sampling top_p (with temperature > 0).")
    max_new_tokens: int = _f(512, "Longest answer, in tokens.")
    reference: Literal["outputs", "previous", "m0", "base", "none"] = _f(
        "outputs", "What each model's answers are judged against: the prompt set's reference `output`s (the held-out "
                   "seed answers by default), the previous model's answers, M0's, the base model's; `none`: no "
                   "judging.")
    judge: str = _f("base", "The pairwise judge: `base` (the run's base model) or a hub id or local path; with "
                            "`eval.judge_api_base`, the model the endpoint serves (its tokenizer renders the "
                            "prompts).")
    judge_api_base: Optional[str] = _f(
        None, "An OpenAI-compatible endpoint (up to /v1) that serves `eval.judge`; null: load the judge in process.")
    judge_mode: Literal["generate", "logits"] = _f(
        "generate", "`generate`: the judge reasons and writes 'Winner: A|B|tie'; `logits`: P('A') vs P('B') after "
                    "'Winner:' in one forward pass per order.")
    judge_max_new_tokens: int = _f(256, "generate mode: longest judge output, in tokens.")
    judge_system_prompt: Optional[str] = _f(None, "System prompt given to the pairwise judge (null: none).")
    judge_constraint: Optional[str] = _f(
        None, "generate mode: the format of the pairwise judge's verdict, enforced while decoding and checked after "
              "(docs/constraints.md), e.g. `builtin:verdict` (reasoning, then 'Winner: A|B|tie').")
    bootstrap_samples: int = _f(2000, "Bootstrap resamples of the prompts for the win rate's 95% interval.")
    length_drift_ratio: float = _f(
        1.5, "Flag a model whose mean answer length is more than this many times M0's, or less than 1/this.")
    lm_eval_tasks: list[str] = _f([], "lm-evaluation-harness tasks run on each model (pip install humpback[eval]).")
    lm_eval_include_path: Optional[str] = _f(None, "A folder of your own lm-eval task YAML files.")
    lm_eval_limit: Optional[int] = _f(None, "lm-eval: at most this many examples per task.")
    lm_eval_num_fewshot: Optional[int] = _f(None, "lm-eval: few-shot examples (null: each task's default).")
    lm_eval_batch_size: int = _f(8, "lm-eval: batch size.")
    lm_eval_chat_template: bool = _f(False, "lm-eval: render requests with the chat template and "
                                            "`eval.system_prompt`.")

    def validate(self, where: str) -> None:
        if self.temperature < 0:
            raise ConfigError(f"{where}: 'eval.temperature' must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{where}: 'eval.top_p' must be in (0, 1], got {self.top_p}")
        for key in ("max_new_tokens", "judge_max_new_tokens", "bootstrap_samples", "lm_eval_batch_size"):
            _positive(where, f"eval.{key}", getattr(self, key))
        _positive(where, "eval.max_prompts", self.max_prompts, allow_none=True)
        _positive(where, "eval.lm_eval_limit", self.lm_eval_limit, allow_none=True)
        if self.lm_eval_num_fewshot is not None and self.lm_eval_num_fewshot < 0:
            raise ConfigError(f"{where}: 'eval.lm_eval_num_fewshot' must be >= 0, got {self.lm_eval_num_fewshot}")
        if self.judge_constraint is not None:
            if self.judge_mode != "generate":
                raise ConfigError(f"{where.of('eval.judge_constraint', 'eval.judge_mode')}: 'eval.judge_constraint' "
                                  f"applies to eval.judge_mode generate")
            _check_checks(where, "eval", self.judge_constraint, None, 1, self.judge_max_new_tokens, "temperature", 0.0,
                          key="judge_constraint")
        if self.length_drift_ratio <= 1:
            raise ConfigError(f"{where}: 'eval.length_drift_ratio' must be > 1, got {self.length_drift_ratio}")
        if self.judge_api_base is not None and not self.judge_api_base.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: 'eval.judge_api_base' must start with http:// or https://, "
                              f"got {self.judge_api_base!r}")
        if self.lm_eval_include_path is not None and not Path(self.lm_eval_include_path).is_dir():
            raise ConfigError(f"{where}: 'eval.lm_eval_include_path': no such folder {self.lm_eval_include_path!r}")
        if self.prompts is not None and not self.prompts.startswith("builtin:") and _looks_local(self.prompts) \
                and not Path(self.prompts).expanduser().exists():
            raise ConfigError(f"{where}: 'eval.prompts': no such file or folder {self.prompts!r}")


def _looks_local(ref: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; a path with a suffix, a leading ./ / ~ or more slashes is a file."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or Path(ref).suffix.lower() in (
        ".json", ".jsonl", ".parquet", ".gz")


@dataclass
class TrainConfig:
    learning_rate: float = _f(2e-4, "Peak learning rate (LoRA: ~10x the paper's full-finetuning 1e-5/2e-5).")
    lr_scheduler_type: str = _f("linear", "Any transformers scheduler name.")
    min_lr_ratio: Optional[float] = _f(
        None, "With lr_scheduler_type linear or cosine: decay to this fraction of the peak instead of 0 "
              "(paper: 1e-5 to 9e-6, 0.9). null: decay to 0.")
    warmup_ratio: float = _f(0.03, "Fraction of steps used for warmup.")
    weight_decay: float = _f(0.1, "Weight decay (paper: 0.1).")
    num_train_epochs: float = _f(3.0, "Epochs, when `train.steps` is `epochs`.")
    steps: Literal["epochs", "paper"] = _f(
        "epochs", "`epochs`: use num_train_epochs; `paper`: the paper's steps-by-data-size table."
    )
    max_steps: int = _f(-1, "If > 0, train exactly this many steps (overrides `steps`).")
    per_device_train_batch_size: int = _f(8, "Examples per device per step.")
    gradient_accumulation_steps: int = _f(4, "Steps accumulated per optimizer update (8 x 4 = 32, the paper's batch).")
    max_length: int = _f(2048, "Longest training sequence, in tokens (longer ones are truncated).")
    packing: bool = _f(False, "Pack several short examples into one sequence.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")
    bf16: Optional[bool] = _f(None, "Mixed precision in bfloat16; null: on when a GPU supports it.")
    full_finetune: bool = _f(False, "Train every weight instead of a LoRA adapter.")
    dropout: Optional[float] = _f(
        0.1, "Full finetuning: every dropout probability of the model's config (attention_dropout, ...) "
             "is set to this (paper: 0.1). null keeps the model's own. LoRA uses lora_dropout.")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    lora_dropout: float = _f(0.1, "LoRA dropout (paper: dropout 0.1).")
    lora_target_modules: str = _f("all-linear", "PEFT target modules: `all-linear` or comma-separated names.")
    logging_steps: int = _f(10, "Log the training loss every this many steps.")
    deepspeed: Optional[str] = _f(None, "Path to a DeepSpeed JSON config (see configs/deepspeed/).")
    accelerate_config: Optional[str] = _f(
        None, "Path to an accelerate config (configs/accelerate/): each training runs under `accelerate launch`."
    )
    num_processes: Optional[int] = _f(None, "With accelerate_config: processes (GPUs) to launch, overriding the file.")
    objective: Literal["sft", "dpo"] = _f(
        "sft", "`sft`: model K is finetuned on seed + A(K) (the paper). `dpo`: that model then answers a prompt bank "
               "`preferences.n` times, a judge scores the answers, and DPO trains it further on best-vs-worst pairs "
               "(Self-Rewarding LMs; see the `preferences` and `dpo` sections and docs/preferences.md).")

    def validate(self, where: "Source") -> None:
        for key in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                    "max_length", "lora_r", "lora_alpha", "logging_steps", "num_train_epochs"):
            _positive(where, f"train.{key}", getattr(self, key))
        _fraction(where, "train.warmup_ratio", self.warmup_ratio)
        if self.min_lr_ratio is not None:
            if not 0 <= self.min_lr_ratio < 1:
                raise ConfigError(f"{where.of('train.min_lr_ratio')}: 'train.min_lr_ratio' must be in [0, 1), "
                                  f"got {self.min_lr_ratio!r}")
            if self.lr_scheduler_type not in ("linear", "cosine"):
                raise ConfigError(f"{where.of('train.min_lr_ratio', 'train.lr_scheduler_type')}: 'train.min_lr_ratio' "
                                  f"needs train.lr_scheduler_type linear or cosine, got {self.lr_scheduler_type!r}")
        if self.dropout is not None:
            _fraction(where, "train.dropout", self.dropout)
        _fraction(where, "train.lora_dropout", self.lora_dropout)
        for key in ("deepspeed", "accelerate_config"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"{where.of('train.' + key)}: 'train.{key}': no such file {value!r}")


DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust", "nca_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down",
                  "sigmoid_norm")


@dataclass
class PreferencesConfig:
    prompts: str = _f(
        "curated", "The prompt bank model K answers: `curated` (iteration K's curated instructions), `seed` (the seed "
                   "instructions it trained on), or a JSON/JSONL/Parquet file or folder (or `datasets` id) of records "
                   "with an `instruction`.")
    max_prompts: Optional[int] = _f(None, "Answer at most this many prompts of the bank (the first ones).")
    n: int = _f(4, "Answers sampled per prompt (Self-Rewarding LMs: 4); at least 2.")
    temperature: float = _f(0.7, "Sampling temperature of the answers (Self-Rewarding LMs: 0.7); must be > 0.")
    top_p: float = _f(0.9, "Nucleus sampling top_p of the answers (Self-Rewarding LMs: 0.9).")
    max_new_tokens: int = _f(256, "Longest answer, in tokens.")
    system_prompt: Optional[str] = _f(
        EVAL_SYSTEM_PROMPT, "System prompt the answers are sampled under and DPO trains with (default: the paper's "
                            "inference-time tags, as eval.system_prompt; null: none).")
    keep_truncated: bool = _f(False, "Pair answers that ran out of max_new_tokens too (they are judged and counted "
                                     "either way).")
    judge_kind: Literal["additive", "rating", "rubric", "likelihood", "verifier"] = _f(
        "additive", "Who scores the answers: `additive` (the Self-Rewarding LMs 0-5 points prompt), or a curation "
                    "judge (`rating`, `rubric`, `likelihood`, `verifier`). Its settings (mode, system_prompt, "
                    "max_new_tokens, temperature, rubric, likelihood, verifier) are the `curate` section's.")
    judge: Optional[str] = _f(None, "An outside judge model (hub id or local path); null: model K judges its own "
                                    "answers (self-rewarding).")
    min_margin: float = _f(0.0, "A pair needs best - worst >= this (and always > 0: equal scores are a tie, not a "
                                "pair).")

    def validate(self, where: "Source") -> None:
        if self.n < 2:
            raise ConfigError(f"{where.of('preferences.n')}: 'preferences.n' must be at least 2 (a pair needs two "
                              f"answers to one prompt), got {self.n!r}")
        if not self.temperature > 0:
            raise ConfigError(f"{where.of('preferences.temperature')}: 'preferences.temperature' must be > 0 (at 0 "
                              f"the {self.n} answers to a prompt are all the same greedy answer), got "
                              f"{self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{where.of('preferences.top_p')}: 'preferences.top_p' must be in (0, 1], got "
                              f"{self.top_p!r}")
        _positive(where, "preferences.max_new_tokens", self.max_new_tokens)
        _positive(where, "preferences.max_prompts", self.max_prompts, allow_none=True)
        if self.min_margin < 0:
            raise ConfigError(f"{where.of('preferences.min_margin')}: 'preferences.min_margin' must be >= 0, "
                              f"got {self.min_margin!r}")
        if self.judge_kind == "verifier" and self.judge is not None:
            raise ConfigError(f"{where.of('preferences.judge', 'preferences.judge_kind')}: 'preferences.judge' names "
                              f"a model, but the verifier judge uses none")
        if self.prompts not in ("curated", "seed") and not self.prompts.startswith("builtin:") \
                and _looks_local(self.prompts) and not Path(self.prompts).expanduser().exists():
            raise ConfigError(f"{where.of('preferences.prompts')}: 'preferences.prompts': no such file or folder "
                              f"{self.prompts!r}")


@dataclass
class DPOSettings:
    beta: float = _f(0.1, "DPO's beta: how far the model may move from the reference, model K itself (Self-Rewarding "
                          "LMs and the DPO paper: 0.1).")
    loss_type: Literal[DPO_LOSS_TYPES] = _f("sigmoid", "TRL's DPO loss: `sigmoid` is the DPO paper's; `ipo`, `hinge`, "
                                                       "`robust`, ... are TRL's variants.")
    learning_rate: float = _f(1e-5, "Peak learning rate (LoRA: ~10x Self-Rewarding LMs' full-finetuning 1e-6).")
    min_lr_ratio: Optional[float] = _f(
        0.1, "Decay linearly to this fraction of the peak (Self-Rewarding LMs: 1e-6 to 1e-7, 0.1); null: to 0.")
    num_train_epochs: float = _f(1.0, "Passes over the preference pairs.")
    max_steps: int = _f(-1, "If > 0, train exactly this many steps (overrides num_train_epochs).")
    per_device_train_batch_size: int = _f(8, "Pairs per device per step.")
    gradient_accumulation_steps: int = _f(2, "Steps per optimizer update (8 x 2 = 16, Self-Rewarding LMs' batch).")

    def validate(self, where: "Source") -> None:
        for key in ("beta", "learning_rate", "num_train_epochs", "per_device_train_batch_size",
                    "gradient_accumulation_steps"):
            _positive(where, f"dpo.{key}", getattr(self, key))
        if self.min_lr_ratio is not None and not 0 <= self.min_lr_ratio < 1:
            raise ConfigError(f"{where.of('dpo.min_lr_ratio')}: 'dpo.min_lr_ratio' must be in [0, 1), "
                              f"got {self.min_lr_ratio!r}")


@dataclass
class TrackingConfig:
    backend: Literal["none", "wandb", "tensorboard"] = _f("none", "Where metrics are mirrored; metrics.jsonl is "
                                                                  "always written.")
    mode: Literal["auto", "online", "offline"] = _f("auto", "wandb mode; `auto` is offline when no API key is set.")
    project: str = _f("humpback", "wandb project.")
    entity: Optional[str] = _f(None, "wandb entity (team or user).")
    tags: list[str] = _f([], "wandb tags.")
    progress: bool = _f(True, "Show progress bars (turn off for CI logs).")
    artifacts: Literal["reference", "upload", "none"] = _f(
        "reference", "wandb Artifacts of the corpora and models: `reference` points at the run folder's files "
                     "(lineage and digests, no copy), `upload` copies them into wandb, `none` logs none.")
    sample_pairs: int = _f(64, "Scored pairs per iteration in the wandb Table (half accepted, half rejected).")

    def validate(self, where: "Source") -> None:
        _positive(where, "tracking.sample_pairs", self.sample_pairs)


@dataclass
class WorkersConfig:
    engine: Literal["local", "ray"] = _f(
        "local", "`local`: the sharded generation and scoring stages run in this process (and in any SLURM array "
                 "or --num-workers peers sharing the run folder); `ray`: their shards run on a Ray cluster's "
                 "workers, each holding the model (pip install humpback[ray]; docs/ray.md). Outputs are the same.")
    address: Optional[str] = _f(
        None, "ray: the cluster to join (`auto`, `ray://head:10001`, `head:6379`); null starts a local cluster "
              "for the run (workers.local_cpus CPUs) and stops it at the end.")
    count: int = _f(2, "ray: workers (model replicas); each runs one shard at a time.")
    cpus_per_worker: float = _f(1.0, "ray: CPUs each worker reserves.")
    gpus_per_worker: Optional[float] = _f(
        None, "ray: GPUs each worker reserves; null: generation.tensor_parallel_size with the vllm backend, "
              "else 0 (the hf backend on CPU).")
    local_cpus: Optional[int] = _f(None, "ray, no address: CPUs of the local cluster (null: Ray's default, all).")
    max_retries: int = _f(
        2, "ray: how often a worker that died (killed, out of memory, node lost) is restarted and its shard "
           "retried; a shard is a pure function of its rows and seeds, so a retry writes the same files.")

    def validate(self, where: "Source") -> None:
        _positive(where, "workers.count", self.count)
        _positive(where, "workers.cpus_per_worker", self.cpus_per_worker)
        _positive(where, "workers.local_cpus", self.local_cpus, allow_none=True)
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError(f"{where.of('workers.gpus_per_worker')}: 'workers.gpus_per_worker' must be >= 0, "
                              f"got {self.gpus_per_worker!r}")
        if self.max_retries < 0:
            raise ConfigError(f"{where.of('workers.max_retries')}: 'workers.max_retries' must be >= 0, "
                              f"got {self.max_retries!r}")
        if self.engine == "local" and self.address is not None:
            raise ConfigError(f"{where.of('workers.address', 'workers.engine')}: 'workers.address' is only used by "
                              f"workers.engine ray (set workers.engine: ray, or remove the key)")


@dataclass
class RunConfig:
    base_model: str = _f(help="Hub id or local path of the base model (`builtin:tiny-llama` builds a tiny one).")
    seed: SeedConfig = _f(help="Seed (instruction, output) pairs.")
    corpus: Optional[CorpusConfig] = _f(None, "Unlabelled text (backtranslation needs it; self_instruct has none).")
    name: str = _f("humpback", "Run name; the default run folder is runs/<name>.")
    base_model_revision: Optional[str] = _f(None, "Hub revision (branch, tag or commit) of the base model.")
    iterations: int = _f(2, "Curation/finetuning rounds after the seed models (paper: 2).")
    random_seed: int = _f(42, "Seed for sampling and training.")
    shard_size: int = _f(
        1000, "Generation and scoring write their results in shards of this many records (the unit of resume)."
    )
    generation: GenerationConfig = _section(GenerationConfig, "How text is generated and scored.")
    augment: AugmentConfig = _section(AugmentConfig, "Self-augmentation (backward model).")
    curate: CurateConfig = _section(CurateConfig, "Self-curation (judge).")
    train: TrainConfig = _section(TrainConfig, "Finetuning of the backward, seed and next models.")
    tracking: TrackingConfig = _section(TrackingConfig, "Metrics and logging.")
    eval: EvalConfig = _section(EvalConfig, "Evaluation of every model of the run.")
    preferences: PreferencesConfig = _section(PreferencesConfig, "train.objective dpo: the answers, the judge and "
                                                                 "the pairs DPO trains on.")
    dpo: DPOSettings = _section(DPOSettings, "train.objective dpo: the DPO training of each model K.")
    workers: WorkersConfig = _section(WorkersConfig, "Where the sharded generation and scoring stages run "
                                                     "(this process, or a Ray cluster).")

    def validate(self, where: "Source") -> None:
        _positive(where, "iterations", self.iterations)
        _positive(where, "shard_size", self.shard_size)
        if self.augment.source == "backtranslation" and self.corpus is None:
            raise ConfigError(f"{where.of('corpus', 'augment.source')}: missing required section 'corpus' "
                              f"(augment.source backtranslation writes instructions for corpus segments)")
        if self.augment.source == "self_instruct" and self.corpus is not None:
            raise ConfigError(f"{where.of('corpus', 'augment.source')}: 'corpus' is not used by augment.source "
                              f"self_instruct (it writes its own tasks); remove the section")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value) and hasattr(value, "validate"):
                value.validate(where)
        if (self.train.objective == "dpo" and self.preferences.judge_kind == "verifier"
                and self.curate.verifier is None):
            raise ConfigError(f"{where.of('preferences.judge_kind', 'curate.verifier')}: preferences.judge_kind "
                              f"'verifier' needs 'curate.verifier' (package.module:function)")
        if self.train.objective == "dpo" and self.dpo.min_lr_ratio is not None \
                and self.train.lr_scheduler_type not in ("linear", "cosine"):  # DPO decays on the train schedule
            raise ConfigError(f"{where.of('dpo.min_lr_ratio', 'train.lr_scheduler_type')}: 'dpo.min_lr_ratio' needs "
                              f"train.lr_scheduler_type linear or cosine, got {self.train.lr_scheduler_type!r} "
                              f"(set dpo.min_lr_ratio=null to use it as it is)")
        if self.workers.engine == "ray" and self.generation.backend == "openai":
            raise ConfigError(f"{where.of('workers.engine', 'generation.backend')}: workers.engine 'ray' runs a model "
                              f"in each Ray worker; generation.backend 'openai' sends requests to a server instead "
                              f"(scale the server, and generation.concurrency)")
        if self.eval.enabled and self.eval.prompts is None and self.seed.heldout == 0:
            raise ConfigError(f"{where}: 'eval.enabled' needs eval prompts: hold seed pairs out ('seed.heldout' > 0) "
                              f"or name a prompt set ('eval.prompts')")


def _positive(where: "Source", key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{where.of(key)}: '{key}' must be > 0, got {value!r}")


def _check_checks(where: "Source", section: str, constraint: Optional[str], validator: Optional[str],
                  max_tries: int, max_new_tokens: int, temperature_key: str, temperature: float,
                  key: str = "constraint") -> None:
    """A generation step's constraint, validator and max_tries (see humpback.generation.rejection)."""
    if constraint is not None:
        from .generation.constraints import parse_constraint

        try:
            parse_constraint(constraint, max_new_tokens)
        except ConfigError as e:
            who = where.of(f"{section}.{key}") if hasattr(where, "of") else where
            raise ConfigError(f"{who}: '{section}.{key}': {e}") from None
    if validator is not None:
        from .judges.verifier import check_path

        try:
            check_path(validator, f"{section}.validator")
        except ConfigError as e:
            raise ConfigError(f"{where.of(f'{section}.validator')}: {e}") from None
    _positive(where, f"{section}.max_tries", max_tries)
    if max_tries > 1 and temperature == 0:
        raise ConfigError(f"{where.of(f'{section}.max_tries', f'{section}.{temperature_key}')}: '{section}.max_tries' "
                          f"is {max_tries}, but greedy decoding ({section}.{temperature_key} 0) gives the same answer "
                          f"every time; set {section}.{temperature_key} > 0 or max_tries 1")
    if max_tries > 1 and constraint is None and validator is None:
        raise ConfigError(f"{where.of(f'{section}.max_tries')}: '{section}.max_tries' is {max_tries}, but there is "
                          f"nothing to retry against ({section}.constraint and {section}.validator are unset)")


def _fraction(where: "Source", key: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{where.of(key)}: '{key}' must be between 0 and 1, got {value!r}")


# --------------------------------------------------------------------------- parsing


def load_config(path: str | Path | None = None, overrides: list[str] = (), data: dict | None = None) -> RunConfig:
    """Read a recipe (or ``data``), apply ``key=value`` overrides, build and validate a RunConfig."""
    where = str(path) if path is not None else "config"
    if data is None:
        if path is None:
            raise ConfigError("no recipe given")
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{where}: no such recipe file")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a recipe must be a mapping of keys, got {type(data).__name__}")
    data = _deep_copy(data)
    src = Source(where)
    for item in overrides:
        src.overridden.add(_apply_override(data, item))
    cfg = _build(RunConfig, data, "", src)
    cfg.validate(src)
    cfg._where = src  # who set each key, for errors raised later (see who_set)
    for warning in config_warnings(cfg, data, src):
        log.warning("%s", warning)
    return cfg


def config_warnings(cfg: "RunConfig", data: dict, src: "Source | None" = None) -> list[str]:
    """What is valid but surely not meant: a selection setting the chosen ``curate.select`` ignores, and a
    threshold on the expected score that keeps almost nothing. ``data`` is the recipe as given (with
    the overrides), to tell a key that was set from a default."""
    src = src or Source("config")
    curate = data.get("curate") if isinstance(data.get("curate"), dict) else {}
    c = cfg.curate
    out = []
    defaults = {f.name: f.default for f in dataclasses.fields(CurateConfig)}
    for key in ("threshold", "top_fraction", "top_k"):
        # A key left at its default says nothing (a dumped config.yaml names every key).
        if key in curate and c.select != key and getattr(c, key) != defaults[key]:
            out.append(f"{src.of('curate.' + key)}: 'curate.{key}' is ignored: curate.select is {c.select!r}")
    if c.select == "threshold" and c.score_field() == "expected_score" and c.threshold > EXPECTED_THRESHOLD_WARN:
        out.append(f"{src.of('curate.threshold')}: 'curate.threshold: {c.threshold:g}' on the expected score keeps "
                   f"almost nothing: an expected score of {c.threshold:g} needs P('5') >= {c.threshold - 4:.0%} "
                   f"(all of it, at 5). The paper's A5 is a threshold of 5 on the generated or argmax score "
                   f"(curate.select_on); on the expected score use at most {EXPECTED_THRESHOLD_WARN:g}, or "
                   f"curate.select top_fraction")
    return out


def who_set(cfg: "RunConfig", key: str) -> str:
    """``command line``, the recipe file, or ``the default`` for a dotted key of a loaded config."""
    where = getattr(cfg, "_where", None)
    if where is None:
        return "the config"
    if where.of(key) == "command line":
        return "command line"
    section, _, leaf = key.rpartition(".")
    data = getattr(cfg, section) if section else cfg
    default = next(f for f in dataclasses.fields(data) if f.name == leaf).default
    return where.file if getattr(data, leaf) != default else "the default"


class Source(str):
    """Where values came from: the recipe file (the string itself), or the command line for
    overridden keys. Every ``validate(where)`` gets one, so an error blames who set the value."""

    def __new__(cls, file: str, overridden: Iterable[str] = ()) -> "Source":
        obj = super().__new__(cls, file)
        obj.overridden = set(overridden)
        return obj

    @property
    def file(self) -> str:
        return str.__str__(self)

    def of(self, *keys: str) -> str:
        """``command line`` if any of ``keys`` (or a section above one) was overridden there, else the file."""
        for key in keys:
            parts = key.split(".")
            if any(".".join(parts[:i]) in self.overridden for i in range(1, len(parts) + 1)):
                return "command line"
        return self.file


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def _apply_override(data: dict, item: str) -> str:
    if "=" not in item:
        raise ConfigError(f"command line: override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"command line: '{'.'.join(parts[: i + 1])}' is not a section, cannot set {key!r}")
        node = nxt
    node[parts[-1]] = value
    return key


def _build(cls: type, data: Any, prefix: str, src: Source) -> Any:
    if not isinstance(data, dict):
        key = prefix.rstrip(".") or "recipe"
        raise ConfigError(f"{src.of(key)}: '{key}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + str(unknown[0])
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=3)
        hint = f" (did you mean {', '.join(repr(prefix + c) for c in close)}?)" if close else ""
        raise ConfigError(f"{src.of(key)}: unknown key '{key}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            what = "section" if dataclasses.is_dataclass(hints[name]) else "key"
            raise ConfigError(f"{src.file}: missing required {what} '{key}'")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, src: Source) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    loc = src.of(key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".", src)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(a, value, key, src)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{loc}: '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{loc}: '{key}' must be a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}", src) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{loc}: '{key}' must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]", src) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{loc}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{loc}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 2e-4 (no dot in the mantissa) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{loc}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{loc}: '{key}' must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{loc}: '{key}' has an unsupported type {tp!r}")  # pragma: no cover


# --------------------------------------------------------------------------- output

_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_SECRET = re.compile(r"(^|_)(token|api_?key|secret|password)$", re.IGNORECASE)


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain data, with anything that looks like a secret removed."""
    out = {}
    for f in dataclasses.fields(cfg):
        if _SECRET.search(f.name):
            continue
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def describe_keys(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) for every leaf key: docs/config.md and `--help` use it."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = next((a for a in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(a)),
                       None)
        if section is not None:
            rows += describe_keys(section, prefix + f.name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        rows.append((prefix + f.name, f.metadata.get("help", ""), default))
    return rows


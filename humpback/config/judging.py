"""The judges' settings and their cross-key checks: the curation judge and its selection (``curate``),
the pairwise judge of evaluation (``eval``), and the preference judge with its answers (``preferences``);
and the warnings for curation settings that are valid but surely not meant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from ..errors import ConfigError
from ..prompts import EVAL_SYSTEM_PROMPT, SEED_SYSTEM_PROMPT
from .checks import check_rejection, looks_local
from .parse import Source, _f, positive

if TYPE_CHECKING:
    from .load import RunConfig

# A threshold above this on the expected score (a mean over P("1".."5")) keeps almost nothing:
# expected >= t needs P("5") >= t - 4 even with all the rest on "4".
EXPECTED_THRESHOLD_WARN = 4.5


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

    def validate(self, where: Source) -> None:
        kinds = ("rating", "rubric", "likelihood", "verifier")
        for kind in self.compare_judges:
            if kind not in kinds:
                raise where.invalid("curate.compare_judges", f"names {kind!r}, which is not a judge "
                                                             f"(one of {', '.join(kinds)})")
        if len(set(self.compare_judges)) != len(self.compare_judges):
            raise where.invalid("curate.compare_judges", "names a judge twice")
        if self.judge_kind in self.compare_judges:
            raise where.error(("curate.compare_judges", "curate.judge_kind"),
                              f"'curate.compare_judges' names {self.judge_kind!r}, the judge that already selects "
                              f"(curate.judge_kind)")
        if "verifier" in self.compare_judges and self.verifier is None:
            raise where.error(("curate.compare_judges", "curate.verifier"), "the verifier judge in "
                              "'curate.compare_judges' needs 'curate.verifier' (package.module:function)")
        if self.judge_kind == "rubric" and not self.rubric_temperature > 0:
            raise where.invalid("curate.rubric_temperature", "must be > 0")
        if self.judge_kind == "rating" and not 1 <= self.threshold <= 5:
            raise where.invalid("curate.threshold", f"must be between 1 and 5, got {self.threshold}")
        if self.judge_kind == "likelihood" and self.select == "threshold" and self.threshold > 0:
            raise where.error(("curate.threshold", "curate.judge_kind"),
                              f"'curate.threshold' is compared with a mean log-probability (or -IFD) for the "
                              f"likelihood judge, so it must be <= 0, got {self.threshold}; or use curate.select "
                              f"top_fraction / top_k")
        if not 0 < self.top_fraction <= 1:
            raise where.invalid("curate.top_fraction", f"must be in (0, 1], got {self.top_fraction}")
        positive(where, "curate.top_k", self.top_k)
        self._validate_select_on(where)
        if self.judge_kind == "verifier":
            if self.verifier is None:
                raise where.error(("curate.judge_kind", "curate.verifier"),
                                  "curate.judge_kind 'verifier' needs 'curate.verifier' (package.module:function)")
            if self.judge is not None:
                raise where.error(("curate.judge", "curate.judge_kind"),
                                  "'curate.judge' names a model, but the verifier judge uses none")
        if self.verifier is not None:
            from ..judges.verifier import check_path

            try:
                check_path(self.verifier)
            except ConfigError as e:
                raise where.error("curate.verifier", str(e)) from None
        positive(where, "curate.max_new_tokens", self.max_new_tokens)
        if self.temperature < 0:
            raise where.invalid("curate.temperature", f"must be >= 0, got {self.temperature}")
        if self.review_force_accepted and not self.review:
            raise where.error(("curate.review_force_accepted", "curate.review"),
                              "'curate.review_force_accepted' needs curate.review true")
        checks = [f"curate.{k}" for k, unset in (("constraint", None), ("validator", None), ("max_tries", 1))
                  if getattr(self, k) != unset]
        if checks and not (self.judge_kind == "rating" and self.mode in ("generate", "both")):
            raise where.error((*checks, "curate.judge_kind", "curate.mode"),
                              "'curate.constraint', 'curate.validator' and 'curate.max_tries' apply to the rating "
                              "judge's generated judgements (curate.judge_kind rating, curate.mode generate or both)")
        check_rejection(where, "curate", self.constraint, self.validator, self.max_tries, self.max_new_tokens,
                        "temperature", self.temperature)
        if not 1 <= self.dev_positive_score <= 5:
            raise where.invalid("curate.dev_positive_score", f"must be between 1 and 5, got {self.dev_positive_score}")

    def _validate_select_on(self, where: Source) -> None:
        """``curate.select_on`` names a score that this judge (and rating mode) writes."""
        if self.judge_kind != "rating" and self.select_on in ("generated", "argmax", "expected"):
            raise where.error(("curate.select_on", "curate.judge_kind"),
                              f"'curate.select_on: {self.select_on}' is a rating-judge score; the {self.judge_kind} "
                              f"judge selects on its value (curate.select_on auto or value)")
        if self.judge_kind == "rating" and self.mode == "generate" and self.select_on in ("argmax", "expected"):
            raise where.error(("curate.select_on", "curate.mode"),
                              f"'curate.select_on: {self.select_on}' needs curate.mode logits or both")
        if self.judge_kind == "rating" and self.mode == "logits" and self.select_on == "generated":
            raise where.error(("curate.select_on", "curate.mode"),
                              "'curate.select_on: generated' needs curate.mode generate or both")

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
    judge_validator: Optional[str] = _f(
        None, "generate mode: `package.module:function` called on each judgement's text, true to accept (rejection "
              "sampling with eval.judge_max_tries). USER CODE THE RECIPE TRUSTS: it is imported and run.")
    judge_max_tries: int = _f(1, "generate mode: attempts per judgement until it passes eval.judge_constraint and "
                                 "eval.judge_validator (more than 1 needs eval.judge_temperature > 0); one that never "
                                 "passes is parsed as it is (a parse failure is counted, as always).")
    judge_temperature: float = _f(0.0, "generate mode: the pairwise judge's sampling temperature (0: greedy, the "
                                       "default; retries need > 0).")
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

    def validate(self, where: Source) -> None:
        if self.temperature < 0:
            raise where.invalid("eval.temperature", f"must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise where.invalid("eval.top_p", f"must be in (0, 1], got {self.top_p}")
        for key in ("max_new_tokens", "judge_max_new_tokens", "bootstrap_samples", "lm_eval_batch_size"):
            positive(where, f"eval.{key}", getattr(self, key))
        positive(where, "eval.max_prompts", self.max_prompts, allow_none=True)
        positive(where, "eval.lm_eval_limit", self.lm_eval_limit, allow_none=True)
        if self.lm_eval_num_fewshot is not None and self.lm_eval_num_fewshot < 0:
            raise where.invalid("eval.lm_eval_num_fewshot", f"must be >= 0, got {self.lm_eval_num_fewshot}")
        if self.judge_temperature < 0:
            raise where.invalid("eval.judge_temperature", f"must be >= 0, got {self.judge_temperature}")
        for key, unset in (("judge_constraint", None), ("judge_validator", None), ("judge_max_tries", 1),
                           ("judge_temperature", 0.0)):
            if getattr(self, key) != unset and self.judge_mode != "generate":
                raise where.error((f"eval.{key}", "eval.judge_mode"),
                                  f"'eval.{key}' applies to eval.judge_mode generate")
        check_rejection(where, "eval", self.judge_constraint, self.judge_validator, self.judge_max_tries,
                        self.judge_max_new_tokens, "judge_temperature", self.judge_temperature, prefix="judge_")
        if self.length_drift_ratio <= 1:
            raise where.invalid("eval.length_drift_ratio", f"must be > 1, got {self.length_drift_ratio}")
        if self.judge_api_base is not None and not self.judge_api_base.startswith(("http://", "https://")):
            raise where.invalid("eval.judge_api_base", f"must start with http:// or https://, "
                                                       f"got {self.judge_api_base!r}")
        if self.lm_eval_include_path is not None and not Path(self.lm_eval_include_path).is_dir():
            raise where.invalid("eval.lm_eval_include_path", f": no such folder {self.lm_eval_include_path!r}")
        if self.prompts is not None and not self.prompts.startswith("builtin:") and looks_local(self.prompts) \
                and not Path(self.prompts).expanduser().exists():
            raise where.invalid("eval.prompts", f": no such file or folder {self.prompts!r}")


@dataclass
class PreferencesConfig:
    prompts: str = _f(
        "curated", "The prompt bank model K answers: `curated` (iteration K's curated instructions), `candidates` "
                   "(every instruction of the candidate pool, curated or not; docs/preferences.md compares the two "
                   "in the controlled world), `seed` (the seed instructions it trained on), or a JSON/JSONL/Parquet "
                   "file or folder (or `datasets` id) of records with an `instruction`.")
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
    constraint: Optional[str] = _f(
        None, "The format every answer must obey, enforced while decoding and checked after (docs/constraints.md): "
              "`regex:...`, `json:FILE`, `choice:a|b`, `grammar:FILE` or a `builtin:...`. An answer that breaks it "
              "is kept and judged, but not paired.")
    validator: Optional[str] = _f(
        None, "`package.module:function` called on each answer's text, true to accept (rejection sampling with "
              "max_tries). USER CODE THE RECIPE TRUSTS: it is imported and run.")
    max_tries: int = _f(1, "Attempts per answer until it passes preferences.constraint and preferences.validator; one "
                           "that never passes keeps its last attempt, counted, and is not paired.")

    def validate(self, where: Source) -> None:
        if self.n < 2:
            raise where.invalid("preferences.n", f"must be at least 2 (a pair needs two answers to one prompt), "
                                                 f"got {self.n!r}")
        if not self.temperature > 0:
            raise where.invalid("preferences.temperature", f"must be > 0 (at 0 the {self.n} answers to a prompt are "
                                                           f"all the same greedy answer), got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise where.invalid("preferences.top_p", f"must be in (0, 1], got {self.top_p!r}")
        positive(where, "preferences.max_new_tokens", self.max_new_tokens)
        positive(where, "preferences.max_prompts", self.max_prompts, allow_none=True)
        if self.min_margin < 0:
            raise where.invalid("preferences.min_margin", f"must be >= 0, got {self.min_margin!r}")
        if self.judge_kind == "verifier" and self.judge is not None:
            raise where.error(("preferences.judge", "preferences.judge_kind"),
                              "'preferences.judge' names a model, but the verifier judge uses none")
        if self.prompts not in ("curated", "candidates", "seed") and not self.prompts.startswith("builtin:") \
                and looks_local(self.prompts) and not Path(self.prompts).expanduser().exists():
            raise where.invalid("preferences.prompts", f": no such file or folder {self.prompts!r}")
        check_rejection(where, "preferences", self.constraint, self.validator, self.max_tries, self.max_new_tokens,
                        "temperature", self.temperature)


def config_warnings(cfg: RunConfig, data: dict, src: Source | None = None) -> list[str]:
    """What is valid but surely not meant: a selection setting the chosen ``curate.select`` ignores, and a
    threshold on the expected score that keeps almost nothing. ``data`` is the recipe as given (with
    the overrides), to tell a key that was set from a default."""
    src = src or Source("config", data)
    curate = data.get("curate") if isinstance(data.get("curate"), dict) else {}
    c = cfg.curate
    out = []
    defaults = {f.name: f.default for f in dataclasses.fields(CurateConfig)}
    for key in ("threshold", "top_fraction", "top_k"):
        # A key left at its default says nothing (a dumped config.yaml names every key).
        if key in curate and c.select != key and getattr(c, key) != defaults[key]:
            out.append(src.blame((f"curate.{key}", "curate.select"),
                                 f"'curate.{key}' is ignored: curate.select is {c.select!r}"))
    if c.select == "threshold" and c.score_field() == "expected_score" and c.threshold > EXPECTED_THRESHOLD_WARN:
        out.append(src.blame(("curate.threshold", "curate.select_on"),
                             f"'curate.threshold: {c.threshold:g}' on the expected score keeps almost nothing: an "
                             f"expected score of {c.threshold:g} needs P('5') >= {c.threshold - 4:.0%} (all of it, "
                             f"at 5). The paper's A5 is a threshold of 5 on the generated or argmax score "
                             f"(curate.select_on); on the expected score use at most {EXPECTED_THRESHOLD_WARN:g}, or "
                             f"curate.select top_fraction"))
    return out

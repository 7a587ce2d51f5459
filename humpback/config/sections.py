"""The config sections of the data, generation, training and run chores: one dataclass per concern, whose
fields are the recipe's keys (each with its help text) and whose ``validate`` checks its own keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from .parse import Source, _f, fraction, positive

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

    def validate(self, where: Source) -> None:
        if (self.path is None) == (self.dataset is None):
            raise where.error(("seed.path", "seed.dataset"), "set exactly one of 'seed.path' and 'seed.dataset'")
        positive(where, "seed.max_examples", self.max_examples, allow_none=True)
        positive(where, "seed.sample", self.sample, allow_none=True)
        if self.sample is not None and self.max_examples is not None:
            raise where.error(("seed.sample", "seed.max_examples"), "set at most one of 'seed.sample' (drawn at "
                              "random) and 'seed.max_examples' (the first ones)")
        if self.heldout < 0 or (self.heldout >= 1 and not float(self.heldout).is_integer()):
            raise where.invalid("seed.heldout", f"must be a fraction in [0, 1) or a whole count, got {self.heldout!r}")


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

    def validate(self, where: Source) -> None:
        if (self.path is None) == (self.dataset is None):
            raise where.error(("corpus.path", "corpus.dataset"),
                              "set exactly one of 'corpus.path' and 'corpus.dataset'")
        positive(where, "corpus.max_documents", self.max_documents, allow_none=True)
        positive(where, "corpus.max_segments", self.max_segments, allow_none=True)
        positive(where, "corpus.min_chars", self.min_chars)
        if self.max_chars < self.min_chars:
            raise where.invalid("corpus.max_chars", f"({self.max_chars}) is below "
                                                    f"'corpus.min_chars' ({self.min_chars})")
        positive(where, "corpus.repetition_ngram", self.repetition_ngram)
        for key in ("repetition_threshold", "boilerplate_threshold", "near_dedup_threshold"):
            fraction(where, f"corpus.{key}", getattr(self, key))


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

    def validate(self, where: Source) -> None:
        positive(where, "generation.batch_size", self.batch_size)
        positive(where, "generation.max_prompt_tokens", self.max_prompt_tokens)
        positive(where, "generation.tensor_parallel_size", self.tensor_parallel_size)
        if not 0 < self.gpu_memory_utilization <= 1:
            raise where.invalid("generation.gpu_memory_utilization",
                                f"must be in (0, 1], got {self.gpu_memory_utilization!r}")
        positive(where, "generation.concurrency", self.concurrency)
        positive(where, "generation.timeout_s", self.timeout_s)
        if self.max_retries < 0:
            raise where.invalid("generation.max_retries", f"must be >= 0, got {self.max_retries!r}")
        if self.backend == "openai" and not self.api_base:
            raise where.error(("generation.backend", "generation.api_base"),
                              "generation.backend 'openai' needs 'generation.api_base' "
                              "(e.g. http://127.0.0.1:8000/v1)")
        if self.api_base is not None and not self.api_base.startswith(("http://", "https://")):
            raise where.invalid("generation.api_base", f"must start with http:// or https://, got {self.api_base!r}")


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

    def validate(self, where: Source) -> None:
        for key in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                    "max_length", "lora_r", "lora_alpha", "logging_steps", "num_train_epochs"):
            positive(where, f"train.{key}", getattr(self, key))
        fraction(where, "train.warmup_ratio", self.warmup_ratio)
        if self.min_lr_ratio is not None:
            if not 0 <= self.min_lr_ratio < 1:
                raise where.invalid("train.min_lr_ratio", f"must be in [0, 1), got {self.min_lr_ratio!r}")
            if self.lr_scheduler_type not in ("linear", "cosine"):
                raise where.error(("train.min_lr_ratio", "train.lr_scheduler_type"),
                                  f"'train.min_lr_ratio' needs train.lr_scheduler_type linear or cosine, got "
                                  f"{self.lr_scheduler_type!r}")
        if self.dropout is not None:
            fraction(where, "train.dropout", self.dropout)
        fraction(where, "train.lora_dropout", self.lora_dropout)
        for key in ("deepspeed", "accelerate_config"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_file():
                raise where.invalid(f"train.{key}", f": no such file {value!r}")


DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust", "nca_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down",
                  "sigmoid_norm")


@dataclass
class DPOSettings:
    beta: float = _f(0.1, "DPO's beta: how far the model may move from the reference, model K itself (Self-Rewarding "
                          "LMs and the DPO paper: 0.1).")
    loss_type: Literal[DPO_LOSS_TYPES] = _f("sigmoid", "TRL's DPO loss: `sigmoid` is the DPO paper's; `ipo`, `hinge`, "
                                                       "`robust`, ... are TRL's variants.")
    sft_weight: float = _f(
        0.0, "Weight of a negative log-likelihood term on the chosen answer added to the DPO loss (RPO, Pang et al. "
             "2024, 'Iterative Reasoning Preference Optimization': 1.0); 0: DPO alone. Without it DPO can lower the "
             "chosen answers' likelihood too (docs/preferences.md#measured-the-world-and-the-real-model).")
    learning_rate: float = _f(1e-5, "Peak learning rate (LoRA: ~10x Self-Rewarding LMs' full-finetuning 1e-6).")
    min_lr_ratio: Optional[float] = _f(
        0.1, "Decay linearly to this fraction of the peak (Self-Rewarding LMs: 1e-6 to 1e-7, 0.1); null: to 0.")
    num_train_epochs: float = _f(1.0, "Passes over the preference pairs.")
    max_steps: int = _f(-1, "If > 0, train exactly this many steps (overrides num_train_epochs).")
    per_device_train_batch_size: int = _f(8, "Pairs per device per step.")
    gradient_accumulation_steps: int = _f(2, "Steps per optimizer update (8 x 2 = 16, Self-Rewarding LMs' batch).")

    def validate(self, where: Source) -> None:
        for key in ("beta", "learning_rate", "num_train_epochs", "per_device_train_batch_size",
                    "gradient_accumulation_steps"):
            positive(where, f"dpo.{key}", getattr(self, key))
        if self.min_lr_ratio is not None and not 0 <= self.min_lr_ratio < 1:
            raise where.invalid("dpo.min_lr_ratio", f"must be in [0, 1), got {self.min_lr_ratio!r}")
        if not self.sft_weight >= 0:
            raise where.invalid("dpo.sft_weight", f"must be >= 0, got {self.sft_weight!r}")


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

    def validate(self, where: Source) -> None:
        positive(where, "tracking.sample_pairs", self.sample_pairs)


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
    model_store: Optional[str] = _f(
        None, "ray: an object-store URL (fsspec: `s3://bucket/prefix`, `gs://...`, `file:///mnt/store`) through "
              "which the workers get the run's models when they cannot read the driver's paths: the driver uploads "
              "each model folder once (named by its content hash), each worker downloads it into its own "
              "HUMPBACK_CACHE. Null: the workers read the driver's paths (a shared file system).")
    max_retries: int = _f(
        2, "ray: how often a worker that died (killed, out of memory, node lost) is restarted and its shard "
           "retried; a shard is a pure function of its rows and seeds, so a retry writes the same files.")

    def validate(self, where: Source) -> None:
        positive(where, "workers.count", self.count)
        positive(where, "workers.cpus_per_worker", self.cpus_per_worker)
        positive(where, "workers.local_cpus", self.local_cpus, allow_none=True)
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise where.invalid("workers.gpus_per_worker", f"must be >= 0, got {self.gpus_per_worker!r}")
        if self.max_retries < 0:
            raise where.invalid("workers.max_retries", f"must be >= 0, got {self.max_retries!r}")
        for key in ("address", "model_store"):
            if self.engine == "local" and getattr(self, key) is not None:
                raise where.error((f"workers.{key}", "workers.engine"), f"'workers.{key}' is only used by "
                                  "workers.engine ray (set workers.engine: ray, or remove the key)")
        if self.model_store is not None:
            from ..generation.model_store import url_problem

            problem = url_problem(self.model_store)
            if problem:
                raise where.invalid("workers.model_store", f"got {self.model_store!r}: {problem}")

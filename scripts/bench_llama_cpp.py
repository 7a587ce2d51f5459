#!/usr/bin/env python
# python scripts/bench_llama_cpp.py --llama-python /path/to/venv/bin/python --output runs/bench-llama-cpp
"""The CPU peer a user would otherwise pick: llama.cpp (through llama-cpp-python) on the same GGUF file,
against humpback's hf backend on the model converted from it, on the same backward prompts.

    python scripts/bench_llama_cpp.py --llama-python ~/llama-venv/bin/python --output runs/bench-llama-cpp

llama-cpp-python compiles llama.cpp when it installs (no CPU wheel on PyPI; about 15 minutes on 2 busy
cores), and needs nothing of humpback, so it lives in a virtual environment of its own
(``python3 -m venv ~/llama-venv && ~/llama-venv/bin/pip install llama-cpp-python``) that ``--llama-python``
names. Both runners get the same prompts (real segments of the Python docs under the backward prompt,
rendered with the model's chat template), the same number of new tokens (``ignore_eos``-free: each stops
at its end token or the limit) and the same thread count; llama.cpp decodes one prompt at a time, as its
Python API does, humpback in length-sorted batches. Figures: generated tokens/s and docs/s, medians of
``--reps``, in OUTPUT/bench_llama_cpp.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness

MODEL = "builtin:smollm2-135m-instruct"
# Run by --llama-python: reads {"gguf", "prompts", "max_new_tokens", "threads", "reps"}, prints one JSON line.
LLAMA_WORKER = r"""
import json, sys, time
from llama_cpp import Llama
spec = json.loads(sys.stdin.read())
llm = Llama(model_path=spec["gguf"], n_ctx=2048, n_threads=spec["threads"], n_batch=512, verbose=False, seed=0)
reps = []
for _ in range(spec["reps"]):
    generated, start = 0, time.perf_counter()
    for prompt in spec["prompts"]:
        out = llm.create_completion(prompt, max_tokens=spec["max_new_tokens"], temperature=spec["temperature"],
                                    top_p=spec["top_p"])
        generated += out["usage"]["completion_tokens"]
    reps.append({"seconds": time.perf_counter() - start, "generated_tokens": generated, "docs": len(spec["prompts"])})
import llama_cpp
print(json.dumps({"reps": reps, "version": llama_cpp.__version__}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llama-python", required=True, help="the python of an environment with llama-cpp-python")
    p.add_argument("--output", default="runs/bench-llama-cpp")
    p.add_argument("--docs", type=int, default=24)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of both runners (default 1: comparable on "
                                                          "a shared machine)")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from humpback.chat import load_chat_tokenizer
    from humpback.config import AugmentConfig
    from humpback.generation.hf import HFGenerator
    from humpback.models import SHIPPED, resolve_model
    from humpback.progress import progress_bars
    from humpback.data.instructions import backward_prompts, backward_sampling

    from benchmark import segment_texts  # the same real segments as the main benchmark

    torch.set_num_threads(args.threads)
    gguf = SHIPPED["smollm2-135m-instruct"].path(MODEL)
    folder = resolve_model(MODEL)
    tok = load_chat_tokenizer(folder)
    prompts = backward_prompts(tok, segment_texts(args.docs))
    params = backward_sampling(AugmentConfig(max_new_tokens=args.max_new_tokens), 0)

    harness.log("llama.cpp ...")
    spec = {"gguf": str(gguf), "prompts": prompts, "max_new_tokens": args.max_new_tokens, "threads": args.threads,
            "reps": args.reps, "temperature": params.temperature, "top_p": params.top_p}
    proc = subprocess.run([args.llama_python, "-c", LLAMA_WORKER], input=json.dumps(spec), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        print(f"error: llama-cpp-python failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 1
    llama = json.loads(proc.stdout.strip().splitlines()[-1])

    harness.log("humpback hf backend ...")
    with progress_bars(False):
        gen = HFGenerator(folder, batch_size=args.batch_size, sort_by_length=True, device="cpu", tokenizer=tok)
    ours = []
    for _ in range(args.reps):
        before, start = gen.usage, time.perf_counter()
        gen.generate(prompts, params)
        ours.append({"seconds": time.perf_counter() - start, "generated_tokens": (gen.usage - before).generated_tokens,
                     "docs": len(prompts)})
    gen.close()

    def rates(reps: list[dict]) -> dict:
        return {"docs_per_s": statistics.median(r["docs"] / r["seconds"] for r in reps),
                "generated_tokens_per_s": statistics.median(r["generated_tokens"] / r["seconds"] for r in reps),
                "reps": reps}

    report = {"model": MODEL, "gguf": gguf.name, "docs": args.docs, "max_new_tokens": args.max_new_tokens,
              "threads": args.threads, "batch_size": args.batch_size, "llama_cpp_version": llama["version"],
              "machine": harness.machine(), "llama_cpp": rates(llama["reps"]), "humpback_hf": rates(ours)}
    report["hf_vs_llama_cpp_docs"] = harness.rnd(report["humpback_hf"]["docs_per_s"]
                                                 / report["llama_cpp"]["docs_per_s"])
    (out / "bench_llama_cpp.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench_llama_cpp.md").write_text(render_markdown(report, args.reps, args.batch_size))
    harness.log(f"wrote {out / 'bench_llama_cpp.json'}")
    return 0


def render_markdown(report: dict, reps: int, batch_size: int) -> str:
    fmt, m = harness.fmt, report["machine"]
    md = [f"# {report['model']}: llama.cpp vs humpback's hf backend", "",
          f"`python scripts/bench_llama_cpp.py --llama-python PY --docs {report['docs']} --max-new-tokens "
          f"{report['max_new_tokens']} --threads {report['threads']} --reps {reps}`", "",
          f"{report['docs']} backward prompts, up to {report['max_new_tokens']} new tokens, {report['threads']} "
          f"thread(s); llama-cpp-python {report['llama_cpp_version']} on {report['gguf']} (4-bit), one prompt at a "
          f"time; humpback's hf backend on the fp32 model converted from it, length-sorted batches of {batch_size}. "
          f"Medians of {reps}. {m['cpu']} ({m['cpu_count']} cores), Python {m['python']}, torch {m['torch']}, "
          f"transformers {m['transformers']}.", "",
          "| runner | docs/s | generated tokens/s |", "|---|---:|---:|"]
    for name, key in (("llama.cpp", "llama_cpp"), ("humpback hf", "humpback_hf")):
        md.append(f"| {name} | {fmt(report[key]['docs_per_s'])} | {fmt(report[key]['generated_tokens_per_s'], 1)} |")
    return "\n".join(md + ["", f"humpback hf / llama.cpp, docs/s: {fmt(report['hf_vs_llama_cpp_docs'])}x"]) + "\n"


if __name__ == "__main__":
    sys.exit(main())

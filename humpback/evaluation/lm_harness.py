"""lm-evaluation-harness on a model of the run: ``lm_eval.simple_evaluate`` with its ``hf`` model on
the base model plus the model's LoRA adapter (``eval.lm_eval_tasks``, ``pip install humpback[eval]``).

Task names are checked before any model loads. Tasks from ``eval.lm_eval_include_path`` (your own
YAML files over your own data) are looked up there first; the harness's ~15,000 built-in tasks are
indexed (about 20 s) only when a name is not among them.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import ConfigError


def task_manager(tasks: Sequence[str], include_path: Optional[str]):
    """A ``TaskManager`` that knows every task in ``tasks``; an unknown name is a ConfigError naming the key."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ConfigError("'eval.lm_eval_tasks' needs lm-evaluation-harness: pip install 'humpback[eval]' "
                          "(or pip install lm-eval)") from None
    manager = None
    if include_path:
        manager = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(t in manager.all_tasks for t in tasks):
            return manager
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    known = set(manager.all_tasks)
    for t in tasks:
        if t not in known:
            close = difflib.get_close_matches(t, list(known), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            where = f" or in {include_path}" if include_path else ""
            raise ConfigError(f"'eval.lm_eval_tasks': lm-eval has no task {t!r} among its own{where}{hint}")
    return manager


def model_args(base_model: str, adapter: Optional[str], revision: Optional[str], device: str, dtype: str) -> dict:
    """The ``hf`` model's arguments: the base model, the adapter as ``peft``, device and dtype."""
    args: dict[str, Any] = {"pretrained": base_model, "device": device, "dtype": dtype}
    if adapter is not None:
        args["peft"] = str(adapter)
        if (Path(adapter) / "tokenizer_config.json").is_file():
            args["tokenizer"] = str(adapter)
    if revision:
        args["revision"] = revision
    return args


def run_tasks(manager, tasks: Sequence[str], args: dict, *, batch_size: int, limit: Optional[int],
              num_fewshot: Optional[int], chat_template: bool, system_prompt: Optional[str], seed: int) -> dict:
    """Run the harness and return what the eval records: per task its metrics (``acc``, ``acc_stderr``,
    filters other than ``none`` kept as ``metric,filter``), sample counts, versions and n-shot."""
    from lm_eval import simple_evaluate

    out = simple_evaluate(model="hf", model_args=args, tasks=list(tasks), task_manager=manager, batch_size=batch_size,
                          limit=limit, num_fewshot=num_fewshot, apply_chat_template=chat_template,
                          system_instruction=system_prompt if chat_template else None, log_samples=False,
                          random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
    return summarize_results(out)


def summarize_results(out: dict) -> dict:
    """The plain-data part of ``simple_evaluate``'s answer."""
    metrics = {}
    for task, values in (out.get("results") or {}).items():
        row = {}
        for key, value in values.items():
            if (key in ("alias", "name", "sample_len") or not isinstance(value, (int, float))
                    or isinstance(value, bool)):
                continue
            metric, _, flt = key.partition(",")
            row[metric if flt in ("", "none") else key] = float(value)
        metrics[task] = row
    import lm_eval

    return {"metrics": metrics, "n_samples": out.get("n-samples"), "n_shot": out.get("n-shot"),
            "versions": out.get("versions"), "lm_eval_version": getattr(lm_eval, "__version__", None)}


def flat_metrics(summary: dict) -> dict:
    """``{"task/metric": value}`` of a summary, the stderr figures left out."""
    return {f"{task}/{m}": v for task, row in (summary.get("metrics") or {}).items() for m, v in row.items()
            if not m.endswith("_stderr")}

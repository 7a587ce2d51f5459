"""``humpback eval RUN_DIR``: evaluate the models of an existing run folder (a finished run, one in
progress, or a replay's output) with the run's own settings, changed by ``eval.*``, ``generation.*``
and ``tracking.*`` overrides; optionally export every model's answers for AlpacaEval.

Stages already done with the same key are skipped, so a second call costs nothing and a new judge
(``eval.judge=...``) re-judges without answering again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from . import layout
from .config import load_config
from .errors import ConfigError, HumpbackError
from .store import RunStore, write_json

ALLOWED = ("eval.", "generation.", "tracking.")
EXPORT_FORMATS = ("alpaca_eval",)


def evaluate_run(run_dir: Path, iteration: Optional[int] = None, overrides: list[str] = (),
                 export: Optional[tuple[str, Path]] = None, force: tuple[str, ...] = (),
                 log: Callable[[str], None] = print, command: str = "eval") -> list[dict]:
    """Evaluate the run's trained models (model K alone with ``iteration`` K, M0 with 0); returns
    their stats, in training order."""
    from .stages.evaluate import evaluate, preflight, prompts_stage

    run_dir = Path(run_dir)
    if not (run_dir / layout.MANIFEST).exists() or not (run_dir / layout.CONFIG).exists():
        raise HumpbackError(f"{run_dir}: not a humpback run folder (no {layout.MANIFEST} or {layout.CONFIG})")
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if not key.startswith(ALLOWED):
            raise ConfigError(f"command line: humpback eval takes eval.*, generation.* and tracking.* overrides; "
                              f"{key!r} would change what the run trained (use humpback run or humpback replay)")
    if export is not None and export[0] not in EXPORT_FORMATS:
        raise ConfigError(f"command line: --export {export[0]!r}: known formats: {', '.join(EXPORT_FORMATS)}")
    from .loop import open_run

    cfg = load_config(run_dir / layout.CONFIG, list(overrides) + ["eval.enabled=true"])
    # Like a run: the folder's lock, an attempt of its own (its figures are told apart), the same tracker.
    rt = open_run(cfg, run_dir, force=force, log=log, command=command)
    try:
        labels = _trained(rt.store, cfg.iterations, iteration)
        rt.tracker.log_steps(prompts_stage(rt))
        preflight(rt)
        stats = evaluate(rt, labels)
    except BaseException:
        rt.close(failed=True)
        raise
    rt.close()
    store = rt.store
    if export is not None:
        export_alpaca_eval(store, labels, Path(export[1]))
    return stats


def _trained(store: RunStore, iterations: int, iteration: Optional[int]) -> list[str]:
    """The labels of the models this run folder holds: base, m0 (if trained), iter_K (if trained)."""
    stages = store.manifest["stages"]
    done = lambda name: stages.get(name, {}).get("status") == "done"  # noqa: E731
    ks = sorted(k for name in stages if (k := layout.iteration_of(name)) is not None
                and name == layout.iteration(k).stage("train") and done(name))
    labels = [layout.BASE] + (["m0"] if done("m0") else []) + [layout.iteration(k).dir for k in ks]
    if iteration is None:
        return labels
    want = "m0" if iteration == 0 else layout.iteration(iteration).dir if iteration > 0 else None
    if want not in labels:
        trained = ", ".join(label for label in labels if label != layout.BASE) or "none"
        raise HumpbackError(f"{store.root}: model {iteration} is not trained in this run folder (trained: {trained})")
    return [want]


def export_alpaca_eval(store: RunStore, labels: list[str], out: Path) -> list[Path]:
    """``OUT/<model>/model_outputs.json`` for each model, ``OUT/reference/model_outputs.json`` for the
    prompt set's reference outputs when it has them, and ``OUT/export.json`` saying what is where."""
    from .evaluation.alpaca_eval import model_outputs, reference_outputs, write_model_outputs

    written = []
    index: dict = {"models": {}}
    for label in labels:
        ev = layout.evaluation(label)
        answers = store.read_rows(ev.answers)
        generator = f"humpback-{store.root.name}-{label}"
        written.append(write_model_outputs(out / label / "model_outputs.json", model_outputs(answers, generator)))
        index["models"][label] = {"file": f"{label}/model_outputs.json", "generator": generator,
                                  "model": answers[0]["generator"] if answers else None}
    refs = reference_outputs(store.read_rows(layout.EVAL_PROMPTS))
    if refs:
        written.append(write_model_outputs(out / "reference" / "model_outputs.json", refs))
        index["reference"] = "reference/model_outputs.json"
    write_json(out / "export.json", index)
    return written

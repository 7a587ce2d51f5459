"""The `humpback` command: parse, load the config, call the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from . import layout
from .errors import HumpbackError

EPILOG = "Overrides are dotted recipe keys, e.g. curate.threshold=4 train.lora_r=8 (see `humpback keys`)."


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted recipe keys to override")
    p.add_argument("--run-dir",
                   help=f"run folder (default: {layout.default_run_dir('<name>')}); an existing one is resumed")
    _add_console_args(p)
    p.add_argument("--overwrite", action="store_true",
                   help="the run folder holds another recipe's run (other base model, seed or corpus): delete it "
                        "and start afresh")


def _add_console_args(p: argparse.ArgumentParser) -> None:
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="also show what the libraries print (always in RUN_DIR/logs/run-N.log)")
    verbosity.add_argument("--quiet", action="store_true", help="only warnings and the summary, no bars (for CI logs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humpback", description="Self-alignment by instruction backtranslation.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the whole loop (resumes an existing run folder)", epilog=EPILOG)
    _add_recipe_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run a stage even if it is up to date (seed, segments, backward, m0, augment, "
                        "score, select, train, eval, answers, judge, or one iteration's: iter_2/score); repeatable")
    p.add_argument("--num-workers", type=int, default=None,
                   help="split generation and scoring shards over N workers sharing the run folder "
                        "(default: SLURM_ARRAY_TASK_COUNT or WORLD_SIZE, else 1)")
    p.add_argument("--worker-index", type=int, default=None,
                   help="this worker's index, 0..N-1 (default: SLURM_ARRAY_TASK_ID or RANK); worker 0 also "
                        "runs the data and training stages")
    p = sub.add_parser("prepare", help="only the data stages: seed selection and corpus cleaning", epilog=EPILOG)
    _add_recipe_args(p)
    p = sub.add_parser("replay", help="train a fresh checkpoint on a finished run's saved corpus (no generation)",
                       epilog=EPILOG)
    p.add_argument("run_dir", help="the finished run folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.lora_r=64 train.learning_rate=1e-4")
    p.add_argument("--iteration", type=int, required=True, help="which iteration's corpus")
    p.add_argument("--output", required=True, help="new run folder for the replay")
    p.add_argument("--base-model", help="hub id or local path of the checkpoint to train (default: the run's)")
    p.add_argument("--threshold", type=float,
                   help="re-select A(K) from the saved scores with this threshold (e.g. 4 for A4) before training")
    p.add_argument("--judge", help="re-score the saved candidates with this model (hub id or local path), "
                                   "then select and train")
    p.add_argument("--no-review", action="store_true",
                   help="ignore the run's review decisions (by default a rejected pair is left out, an edited "
                        "instruction used)")
    p.add_argument("--force-accepted", action="store_true",
                   help="also train on the pairs a reviewer accepted that the judge did not select")
    _add_console_args(p)
    p.add_argument("--overwrite", action="store_true",
                   help="--output holds another replay (other base model, seed or corpus): delete it first")
    p = sub.add_parser("eval", help="evaluate a run's models (held-out loss, answers, pairwise win rate, lm-eval); "
                                    "also a replay's output",
                                    epilog="Overrides: eval.*, generation.*, tracking.* keys, "
                                                                     "e.g. eval.judge=Qwen/Qwen2.5-7B-Instruct")
    p.add_argument("run_dir", help="the run folder")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="e.g. eval.reference=previous eval.judge_mode=logits")
    p.add_argument("--iteration", type=int,
                   help="only model K (0: M0); default: every trained model and the base model")
    p.add_argument("--export", nargs=2, metavar=("FORMAT", "DIR"),
                   help="also write each model's answers for another evaluator: alpaca_eval DIR "
                        "(DIR/<model>/model_outputs.json)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run eval stages even if up to date (eval, loss, answers, judge, lm_eval, or one model's: "
                        "iter_2/eval/judge); repeatable")
    _add_console_args(p)
    p = sub.add_parser("export", help="export an iteration's curated corpus with a provenance dataset card")
    p.add_argument("run_dir")
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--format", choices=["parquet", "jsonl", "alpaca", "messages"], default="jsonl")
    p.add_argument("--preferences", action="store_true",
                   help="the iteration's preference pairs (train.objective dpo; parquet or jsonl) instead of its "
                        "curated set")
    p.add_argument("--output", required=True, help="folder for the data file and README.md (dataset card)")
    p.add_argument("--push-to-hub", metavar="OWNER/NAME", help="also upload the folder as a Hub dataset")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: make the dataset public")
    p.add_argument("--no-review", action="store_true",
                   help="ignore the run's review decisions (by default rejected pairs are left out, edits used)")
    p.add_argument("--force-accepted", action="store_true",
                   help="also export the pairs a reviewer accepted that the judge did not select")
    p = sub.add_parser("report", help="write a run's HTML report (funnel, score histograms, rates, lengths, "
                                      "losses, sampled pairs); works on a run in progress")
    p.add_argument("run_dir")
    p.add_argument("--output", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--sample", type=int, default=5, metavar="N",
                   help="accepted and rejected pairs shown per iteration")
    p = sub.add_parser("inspect", help="print an iteration's scored pairs in the terminal")
    p.add_argument("run_dir")
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--min-score", type=float, help="only pairs scoring at least this")
    p.add_argument("--sample", type=int, default=5, metavar="N", help="how many pairs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="which random sample")
    verdict = p.add_mutually_exclusive_group()
    verdict.add_argument("--accepted", dest="accepted", action="store_const", const=True, help="only accepted pairs")
    verdict.add_argument("--rejected", dest="accepted", action="store_const", const=False, help="only rejected pairs")
    p = sub.add_parser("review", help="read an iteration's generated pairs in the browser and accept, reject or edit "
                                      "them (RUN_DIR/review/decisions.parquet; replay and export honour it)")
    p.add_argument("run_dir")
    p.add_argument("--iteration", type=int, help="whose scores and selection (default: the latest scored iteration)")
    p.add_argument("--sample", type=int, default=50, metavar="N", help="how many pairs to review (default 50)")
    p.add_argument("--order", choices=["threshold", "random"], default="threshold",
                   help="threshold: the pairs nearest the selection threshold first, kept and dropped alternating; "
                        "random: a random sample")
    p.add_argument("--seed", type=int, default=0, help="which random order")
    p.add_argument("--part", default="1/1", metavar="I/N",
                   help="review part I of N disjoint parts of the pool (one per reviewer, e.g. 1/2 and 2/2)")
    p.add_argument("--reviewer", help="the name decisions are recorded under (default: your user name)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one, printed)")
    p.add_argument("--no-browser", action="store_true", help="print the address only; open no browser")
    p.add_argument("--argilla-push", metavar="DATASET",
                   help="instead of serving: push the sample to an Argilla server (ARGILLA_API_URL, ARGILLA_API_KEY)")
    p.add_argument("--argilla-pull", metavar="DATASET",
                   help="instead of serving: pull the Argilla dataset's responses into the decisions")
    p.add_argument("--argilla-workspace", help="the Argilla workspace (default: the user's only one)")
    p = sub.add_parser("keys", help="every recipe key with its default and meaning, as Markdown (docs/config.md)")
    p.add_argument("--output", help="write the Markdown to this file (docs/config.md) instead of printing it")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after the options: collect the leftover key=value items.
    args, rest = parser.parse_known_args(argv)
    unknown = [item for item in rest if "=" not in item or item.startswith("-")]
    if unknown or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or rest)}")
    if rest:
        args.overrides = list(args.overrides) + rest
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except Failed as e:
        print(e, file=sys.stderr)
        return e.status
    except HumpbackError as e:
        print(f"humpback: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("humpback: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        from .tracking import let_wandb_in

        let_wandb_in()  # undo keep_wandb_out (see _dispatch): the command is over


def _dispatch(args: argparse.Namespace) -> int:
    from .config import load_config

    if args.command == "keys":
        from .config_reference import keys_markdown

        if args.output:
            Path(args.output).write_text(keys_markdown())
            print(f"Wrote {args.output}")
        else:
            print(keys_markdown(), end="")
        return 0
    if args.command == "report":
        from .view.report import write_report

        print(f"Report: {write_report(Path(args.run_dir), args.output and Path(args.output), n_pairs=args.sample)}")
        return 0
    if args.command == "review":
        from .review.command import review_command

        return review_command(args)
    if args.command == "inspect":
        from .view.pairs import format_pairs

        print(format_pairs(Path(args.run_dir), args.iteration, n=args.sample, min_score=args.min_score,
                           seed=args.seed, accepted=args.accepted))
        return 0

    from . import console

    overrides = list(getattr(args, "overrides", []))
    if getattr(args, "quiet", False):
        overrides.append("tracking.progress=false")
    mode = (console.VERBOSE if getattr(args, "verbose", False) else
            console.QUIET if getattr(args, "quiet", False) else console.NORMAL)
    if args.command == "replay":
        from .replay import replay

        with _console(Path(args.output), None, mode, bars=not args.quiet) as log:
            result = replay(Path(args.run_dir), Path(args.output), args.iteration, base_model=args.base_model,
                            threshold=args.threshold, judge=args.judge, overrides=overrides, log=log,
                            overwrite=args.overwrite, review=not args.no_review, force_accepted=args.force_accepted)
            pairs = (f", preference pairs sha256 {result['preferences_sha256'][:16]}"
                     if result["preferences_sha256"] else "")
            console.summary(f"\nReplayed iteration {result['iteration']} (mixture sha256 "
                            f"{result['mixture_sha256'][:16]}{pairs}) on {result['base_model']}: "
                            f"{_shown(result['model'])}")
            console.summary(result["review_note"])
        return 0
    if args.command == "eval":
        from .eval_command import evaluate_run
        from .view.scoreboard import format_eval_table, read_evals

        export = (args.export[0], Path(args.export[1])) if args.export else None
        if not (Path(args.run_dir) / layout.MANIFEST).exists():
            raise HumpbackError(f"{args.run_dir}: not a humpback run folder (no {layout.MANIFEST})")
        with _console(Path(args.run_dir), None, mode, bars=not args.quiet) as log:
            evaluate_run(Path(args.run_dir), args.iteration, overrides, export=export, force=tuple(args.force),
                         log=log, command=shlex.join(["humpback", *args.argv]))
            console.summary(format_eval_table(read_evals(Path(args.run_dir))))
            if args.export:
                console.summary(f"AlpacaEval model outputs: {Path(args.export[1])}/<model>/model_outputs.json")
        return 0
    if args.command == "export":
        from .export import export, export_preferences

        if args.preferences:
            path = export_preferences(Path(args.run_dir), args.iteration, args.format, Path(args.output),
                                      push_to_hub=args.push_to_hub, private=not args.public)
        else:
            path = export(Path(args.run_dir), args.iteration, args.format, Path(args.output),
                          push_to_hub=args.push_to_hub, private=not args.public, review=not args.no_review,
                          force_accepted=args.force_accepted)
        print(f"Exported {path} (dataset card: {path.parent / 'README.md'})")
        return 0
    cfg = load_config(args.recipe, overrides)
    run_dir = Path(args.run_dir or layout.default_run_dir(cfg.name))
    if cfg.tracking.backend != "wandb":
        from .tracking import keep_wandb_out

        keep_wandb_out()

    from . import loop
    from .data.funnel import describe_funnel
    from .store import Worker
    from .view.run_summary import format_summary

    started = time.time()
    worker = Worker.from_env(getattr(args, "worker_index", None), getattr(args, "num_workers", None))
    with _console(run_dir, worker, mode, bars=cfg.tracking.progress) as log:
        rt = loop.open_run(cfg, run_dir, force=getattr(args, "force", ()), worker=worker, log=log,
                           overwrite=args.overwrite, command=shlex.join(["humpback", *args.argv]))
        if args.command == "prepare":
            funnel = loop.prepare(rt)
            rt.close()
            console.summary(f"\n{describe_funnel(funnel)}\n\nData prepared in {time.time() - started:.1f}s; "
                            f"run folder: {_shown(run_dir)}")
            return 0
        summaries = loop.run(rt)
        console.summary(format_summary(summaries, Path(_shown(run_dir))))
        console.summary(f"Finished in {time.time() - started:.1f}s")
    return 0


class Failed(Exception):
    """A command that failed after its log opened: what to print (the error, and where the log is) and
    the exit status."""

    def __init__(self, text: str, status: int):
        super().__init__(text)
        self.status = status


@contextlib.contextmanager
def _console(run_dir: Path, worker, mode: str, bars: bool) -> Iterator[Callable[[str], None]]:
    """The command's console and its log file in ``run_dir``; yields the ``log`` the stages get. A
    failure becomes one line and the log's path (the log keeps the traceback)."""
    from . import console

    log_path = console.next_log(run_dir, worker.index if worker is not None and worker.count > 1 else None)
    try:
        with console.open_console(log_path, mode, bars=bars):
            yield console.info
    except HumpbackError as e:
        raise Failed(f"humpback: error: {e}\nhumpback: details in {_shown(log_path)}", 2) from e
    except Exception as e:  # noqa: BLE001 - a bug or a library's failure: one line here, the traceback in the log
        first = " ".join(str(e).split())
        first = first if len(first) <= 300 else first[:297] + "..."
        raise Failed(f"humpback: error: {type(e).__name__}{': ' + first if first else ''}\n"
                     f"humpback: the traceback is in {_shown(log_path)}", 1) from e


def _shown(path) -> str:
    """A path as the console shows it: relative to the working directory when it is inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())

"""Where a training runs: in this process, or under ``accelerate launch`` (several GPUs, DeepSpeed)
when ``train.accelerate_config`` is set. Either way the model is trained into a scratch folder and
moved into place only when it is complete. A job is SFT (:class:`.sft.TrainJob`) or DPO
(:class:`.dpo.PreferenceJob`); both go the same way.

Under ``accelerate launch`` every process runs :func:`main` of this module on a job spec written by
:func:`train_model`; the Trainer distributes the work and the main process saves the model and
writes the result. Everything the processes print goes, line by line, to the run's log; the main
process's training events (:mod:`.steps`) travel apart from that output, through an events file in the
job's spec folder, and draw the bar in the parent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from ..console import details
from ..errors import HumpbackError
from .sft import TrainJob
from .steps import EventReader, EventWriter, StepBar

if TYPE_CHECKING:
    from .dpo import PreferenceJob

launched = details.getChild("launch")  # the launched processes' output, in the run's log


def train_model(job: Union[TrainJob, "PreferenceJob"], rows: list[dict], rows_path: Optional[Path],
                model_dir: Path) -> dict:
    """Train ``job`` on ``rows`` (saved at ``rows_path``, which ``accelerate launch`` reads) into
    ``model_dir``; returns the training summary (:meth:`TrainResult.summary`)."""
    scratch = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    if job.cfg.accelerate_config:
        if rows_path is None:
            raise HumpbackError("training under accelerate launch needs the rows saved to a file")
        result = _launched(job, rows_path, scratch)
    else:
        result = run_job(job, rows, scratch).summary()
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(scratch, model_dir)
    return result


def run_job(job, rows: list[dict], output: Path, events=None):
    """Run an SFT or a DPO job here; its result has ``summary()``."""
    if job.kind == "dpo":
        from .dpo import train_dpo

        return train_dpo(job, rows, output, events=events)
    from .sft import train_sft

    return train_sft(job, rows, output, events=events)


def job_from_dict(kind: str, d: dict):
    if kind == "dpo":
        from .dpo import PreferenceJob

        return PreferenceJob.from_dict(d)
    return TrainJob.from_dict(d)


def _launched(job, rows_path: Path, scratch: Path) -> dict:
    from ..store import write_json

    spec_dir = scratch.parent / (scratch.name + ".spec")
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec, result_path, events_path = spec_dir / "job.json", spec_dir / "result.json", spec_dir / "events.jsonl"
    for stale in (result_path, events_path):
        stale.unlink(missing_ok=True)
    write_json(spec, {"kind": job.kind, "job": job.to_dict(), "rows": str(rows_path), "output": str(scratch),
                      "result": str(result_path), "events": str(events_path)})
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", job.cfg.accelerate_config]
    if job.cfg.num_processes:
        cmd += ["--num_processes", str(job.cfg.num_processes)]
    cmd += ["-m", "humpback.training.launch", "--spec", str(spec)]
    details.info("launching: %s", " ".join(cmd))
    bar = StepBar(job.progress)
    try:
        returncode, last = follow(cmd, EventReader(events_path), bar)
    finally:
        bar.close()
    if returncode != 0 or not result_path.exists():
        raise HumpbackError(f"training under accelerate launch failed (exit {returncode}); "
                            f"its last line of output: {last or '(none)'}")
    result = json.loads(result_path.read_text())
    shutil.rmtree(spec_dir, ignore_errors=True)
    return result


def follow(cmd: list[str], events: EventReader, on_event: Callable[[dict], None],
           poll_s: float = 0.2) -> tuple[int, str]:
    """Run ``cmd``: its output (stdout and stderr, whatever the libraries print) goes line by line to
    the run's log from a reader thread, while this thread hands the events appended to ``events`` to
    ``on_event``, every ``poll_s`` seconds and once more after the process has exited, so that none is
    lost however the two streams' timing falls. Returns the exit status and the last line of output."""
    last: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        reader = threading.Thread(target=_log_output, args=(proc.stdout, last), name="humpback-launch-output",
                                  daemon=True)
        reader.start()
        while True:
            for event in events.read():
                on_event(event)
            try:
                proc.wait(timeout=poll_s)  # only how soon the bar moves; the final read below sees the rest
                break
            except subprocess.TimeoutExpired:
                continue
        reader.join()
        for event in events.read(final=True):
            on_event(event)
    return proc.returncode, (last[-1] if last else "")


def _log_output(stream, last: list[str]) -> None:
    for line in stream:
        text = line.rstrip("\n").split("\r")[-1].rstrip()  # a bar's updates: the last one
        if text:
            launched.info(text)
            last[:] = [text]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m humpback.training.launch")
    p.add_argument("--spec", required=True, help="job spec JSON written by train_model")
    args = p.parse_args(argv)

    from ..progress import library_bars
    from ..store import read_table, write_json

    # The output is a pipe to the parent, which logs it: plain records, no library bars.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    details.setLevel(logging.INFO)
    library_bars(False)
    spec = json.loads(Path(args.spec).read_text())
    job = job_from_dict(spec.get("kind", "sft"), spec["job"])
    result = run_job(job, read_table(Path(spec["rows"])), Path(spec["output"]),
                     events=EventWriter(Path(spec["events"])) if job.progress else (lambda event: None))
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(spec["result"]), result.summary())


if __name__ == "__main__":
    main()

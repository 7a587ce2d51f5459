"""The console of a humpback command: per stage its start line, its bar and its result line; what the
libraries print goes to the run's log (RUN_DIR/logs/run-N.log) with timestamps; off a terminal the bars
are plain lines that fit a row; a failure is one line and the log's path."""

import errno
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from humpback import progress
from humpback.progress import PlainBar
from tiny_runs import TINY_RUNS

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# A run of its own, not conftest's tiny_run: these tests read the console of `humpback run` in a subprocess,
# with the bars on. The settings are TINY_RUNS["small"] (tests/tiny_runs.py): 8 segments.
FAST = [*TINY_RUNS["small"], "tracking.progress=true"]
STAGES = ["seed", "segments", "backward", "m0", "augment"] + [f"iter_{k}/{s}" for k in (1, 2)
                                                             for s in ("score", "select", "train")]
# What each stage's result line starts with, after its two-space indent.
RESULTS = {"seed": "seed: ", "segments": "segments: ", "backward": "backward: ", "m0": "m0: ",
           "augment": "augment: ", "score": "score: ", "select": "curate: ", "train": "train: "}
# Signs of a line that came from transformers, TRL, datasets, torch or DeepSpeed rather than from humpback.
LIBRARY = re.compile(r"Loading weights|Tokenizing|Building labels|Truncating|Dropping fully masked|\{'loss'|"
                     r"train_runtime|Warning|warnings\.warn|\[WARNING\]|transformers|\btrl\b|site-packages|it/s|"
                     r"Setting accelerator")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **extra}


def _in_terminal(cmd: list[str], cwd: Path, columns: int = 100) -> tuple[int, str]:
    """Run ``cmd`` on a pseudo-terminal of ``columns`` columns; its exit status and everything it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    env = {k: v for k, v in _env().items() if k != "COLUMNS"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError as e:  # EIO: the other side closed
            if e.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=60), out.decode("utf-8", errors="replace")


def _screen(raw: str) -> list[str]:
    """What stays on the terminal: per line, the text after its last carriage return."""
    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    return [line.rstrip("\r").split("\r")[-1].rstrip() for line in raw.split("\n")]


def _check_stages(lines: list[str], stages: list[str], state: str = "running (new)") -> None:
    """Every stage has its start line, in order, and its result line before the next stage starts."""
    starts = [next(i for i, line in enumerate(lines) if line.startswith(f"[{name}] {state}")) for name in stages]
    assert starts == sorted(starts), stages
    for name, begin, end in zip(stages, starts, starts[1:] + [len(lines)]):
        prefix = "  " + RESULTS[name.rsplit("/", 1)[-1]]
        assert any(line.startswith(prefix) for line in lines[begin + 1:end]), (name, lines[begin:end])


def _check_log(log: Path) -> str:
    text = log.read_text()
    assert STAMP.match(text)
    assert "trainer step" in text and "'loss'" in text and "train_runtime" in text  # the Trainer's dicts
    # output of the libraries, with timestamps: records of their loggers, warnings, or raw output
    assert re.search(r"^\S+ \S+ (?:WARNING|INFO|OUTPUT) +(?!humpback)", text, re.M), text[:3000]
    return text


# --------------------------------------------------------------------------- the tiny recipe, end to end


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """`humpback run` of the tiny recipe with its output going to a pipe, as under CI or SLURM."""
    cwd = tmp_path_factory.mktemp("piped")
    cmd = [sys.executable, "-m", "humpback", "run", str(TINY), "--run-dir", "run", *FAST]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return cwd, cmd, proc.stdout, proc.stderr


def test_piped_console_shows_each_stage_its_bar_and_result_in_lines_that_fit_a_row(piped_run):
    cwd, _, out, err = piped_run
    assert "\r" not in out and "\x1b" not in out  # no carriage-return bars in a log
    lines = out.splitlines()
    _check_stages(lines, STAGES)
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    bad = [line for line in lines + err.splitlines() if LIBRARY.search(line)]
    assert not bad, bad
    # the bars as plain lines: the training bar's last line has the step count, the loss and the learning rate
    assert re.search(r"^  train: 2/2 steps \(100%\) in \d\d:\d\d, .*loss \d+\.\d{3}, lr \d\.\de-\d\d$", out, re.M)
    assert re.search(r"^  augment: 8/8 segments \(100%\) in \d\d:\d\d", out, re.M)
    assert "Per-iteration summary" in out and "Finished in" in out
    assert (cwd / "run" / "logs").is_dir()
    assert sorted(p.name for p in (cwd / "run" / "logs").iterdir()) == ["run-1.log"]
    text = _check_log(cwd / "run" / "logs" / "run-1.log")
    for line in lines:  # humpback's own lines are in the log too
        if line.startswith("[iter_2/train]"):
            assert line in text


def test_a_resumed_run_shows_each_skipped_stage_with_its_recorded_result(piped_run):
    cwd, cmd, first, _ = piped_run
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    _check_stages(lines, STAGES, state="up to date, skipped")
    # every stage of the first run, the evaluation stages too, is skipped with the result it recorded
    ran = re.findall(r"^\[(\S+)\] running \(new\)", first, re.M)
    assert set(STAGES) < set(ran)
    assert [n for n in re.findall(r"^\[(\S+)\] up to date, skipped", proc.stdout, re.M)] == ran
    results = [line for line in first.splitlines()
               if re.match(r"  [\w ]+: ", line) and not re.match(r"  \w+: \d+/\d+ ", line)]  # bars excepted
    assert len(results) == len(ran) and all(line in lines for line in results), results
    assert (cwd / "run" / "logs" / "run-2.log").exists()  # one log per attempt


def test_terminal_console_draws_bars_and_keeps_the_libraries_out(tmp_path):
    cmd = [sys.executable, "-m", "humpback", "run", str(TINY), "--run-dir", "run", "iterations=1", *FAST]
    rc, raw = _in_terminal(cmd, tmp_path)
    assert rc == 0, raw[-3000:]
    assert "\r" in raw and "%|" in raw  # tqdm bars, redrawn in place
    lines = _screen(raw)
    _check_stages(lines, STAGES[:8])
    assert re.search(r"^  train: 100%\|[^|]*\| 2/2 \[.*steps/s, loss \d+\.\d{3}, lr ", "\n".join(lines), re.M)
    bad = [line for line in lines if LIBRARY.search(line)]
    assert not bad, bad
    _check_log(tmp_path / "run" / "logs" / "run-1.log")


# --------------------------------------------------------------------------- where each kind of output goes

ROUTING = r"""
import logging, os, subprocess, sys, warnings
from pathlib import Path
from humpback import console

with console.open_console(Path(sys.argv[1]), sys.argv[2]):
    console.info("[stage] running (new)")
    console.details.info("a detail for the log")
    console.warn("the judge gives every pair the same score")
    logging.getLogger("transformers.modeling_utils").warning("a library warning")
    warnings.warn("an old API", FutureWarning)
    print("printed by a library")
    os.write(2, b"written to fd 2: 50%\rwritten to fd 2: 100%\n")
    subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
    console.summary("the summary")
print("after the console")
"""


@pytest.mark.parametrize("mode", ["normal", "quiet", "verbose"])
def test_console_shows_humpback_and_the_log_keeps_everything(tmp_path, mode):
    log = tmp_path / "run.log"
    proc = subprocess.run([sys.executable, "-c", ROUTING, str(log), mode], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    ours = {"normal": ["[stage] running (new)", "warning: the judge gives every pair the same score", "the summary"],
            "quiet": ["warning: the judge gives every pair the same score", "the summary"]}
    if mode in ours:
        assert lines == ours[mode] + ["after the console"]
    else:  # verbose: the libraries' output too, named by where it came from
        for expected in ("[stage] running (new)", "warning: the judge gives every pair the same score",
                         "[humpback.details] a detail for the log", "[transformers.modeling_utils] a library warning",
                         "[output] printed by a library", "[output] written to fd 2: 100%",
                         "[output] from a child process", "the summary", "after the console"):
            assert expected in lines, (expected, lines)
        assert any(line.startswith("[output] ") and "FutureWarning: an old API" in line for line in lines)
    text = log.read_text()
    for expected in ("humpback: [stage] running (new)", "humpback.details: a detail for the log",
                     "WARNING humpback: the judge gives every pair the same score",
                     "transformers.modeling_utils: a library warning", "FutureWarning: an old API",
                     "OUTPUT  printed by a library", "OUTPUT  written to fd 2: 100%", "OUTPUT  from a child process",
                     "humpback: the summary"):
        assert expected in text, (expected, text)
    assert "50%" not in text  # a bar's carriage-return updates collapse to the last
    assert "after the console" not in text
    records = [line for line in text.splitlines() if not line.startswith(" ")]
    assert all(STAMP.match(line) for line in records), records


def test_failures_print_one_line_and_where_the_log_is(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "too short to keep"}\n')
    (tmp_path / "not-a-model").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: f\nbase_model: {tmp_path / 'not-a-model'}\n"
                      "seed: {path: builtin:python-docs-seed, format: alpaca}\n"
                      f"corpus: {{path: {corpus}}}\ntracking: {{backend: none}}\n")
    # A data error inside a stage: the error, then where its details are.
    proc = subprocess.run([sys.executable, "-m", "humpback", "prepare", str(recipe), "--run-dir", "a"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "humpback: error: no segment survived filtering: 1 documents -> 1 sections; too_short removed 1; "
        "lower corpus.min_chars", "humpback: details in a/logs/run-1.log"]
    assert "Traceback" in (tmp_path / "a" / "logs" / "run-1.log").read_text()
    # A library's exception (this folder holds no tokenizer): its type and message on one line.
    recipe.write_text(recipe.read_text().replace(f"{{path: {corpus}}}",
                                                 "{path: builtin:python-docs, max_segments: 2}"))
    proc = subprocess.run([sys.executable, "-m", "humpback", "run", str(recipe), "--run-dir", "b"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    first, second = proc.stderr.splitlines()
    assert re.match(r"humpback: error: \w+(Error|Exception): \S", first) and "Traceback" not in proc.stderr
    assert second == "humpback: the traceback is in b/logs/run-1.log"
    assert "[backward] running (new)" in proc.stdout
    log = (tmp_path / "b" / "logs" / "run-1.log").read_text()
    assert "Traceback (most recent call last)" in log and "humpback/stages/finetune.py" in log


# --------------------------------------------------------------------------- bars off a terminal


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_bar_writes_each_tenth_at_most_every_few_seconds_and_a_last_line():
    clock, lines = Clock(), []
    bar = PlainBar(100, "pairs", "score", emit=lines.append, clock=clock)
    for _ in range(50):  # 2 pairs a second: tenths every 5 s, the gap allows one every 5 s
        clock.t += 1
        bar.update(2)
    assert lines == [f"  score: {n}/100 pairs ({n}%), 00:{(100 - n) // 2:02d} left, 2 pairs/s"
                     for n in (10, 20, 30, 40, 50, 60, 70, 80, 90)]
    bar.set_postfix_str("loss 1.250")
    bar.close()
    bar.close()
    assert lines[-1] == "  score: 100/100 pairs (100%) in 00:50, 2 pairs/s, loss 1.250" and len(lines) == 10


def test_plain_bar_keeps_quiet_between_tenths_and_beats_without_a_total():
    clock, lines = Clock(), []
    fast = PlainBar(1000, "segments", "augment", emit=lines.append, clock=clock)
    for _ in range(1000):  # 64 segments a second: a line per 5 s at most, not one per tenth
        clock.t += 1 / 64
        fast.update(1)
    assert [line.split(",")[0] for line in lines] == ["  augment: 320/1000 segments (32%)",
                                                      "  augment: 640/1000 segments (64%)",
                                                      "  augment: 960/1000 segments (96%)"]
    lines.clear()
    unknown = PlainBar(None, "segments", "segments", emit=lines.append, clock=clock)
    for _ in range(150):  # no total: a line a minute
        clock.t += 1
        unknown.update(1)
    unknown.close()
    assert [line.split(",")[0] for line in lines] == ["  segments: 60 segments", "  segments: 120 segments",
                                                      "  segments: 150 segments in 02:30"]


def test_work_counts_toward_the_open_bar_except_when_held():
    with progress.bar(10, "pairs", "score", show=False) as bar:
        with progress.task(4, "prompts", "generate") as work:
            work.update(4)
        with progress.hold(), progress.task(4, "prompts", "logits") as other:
            other.update(4)
        assert bar.n == 4
    with progress.task(3, "prompts", "generate", show=False) as alone:  # no bar open: one of its own
        alone.update(3)
        assert alone is not bar and alone.n == 3

"""Training under `accelerate launch` (train.accelerate_config), as a GPU run does it, here on CPU."""

import json
import logging
import sys
import textwrap
from pathlib import Path

import pytest

from humpback.config import load_config
from humpback.loop import open_run
from humpback.stages.finetune import m0_stage
from humpback.stages.prepare import seed_stage
from humpback.training import launch
from humpback.training.steps import EventReader, EventWriter

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"


@pytest.mark.parametrize("accelerate_config", ["single_gpu.yaml", "deepspeed_zero2.yaml"])
def test_training_runs_under_accelerate_launch(tmp_path, monkeypatch, caplog, accelerate_config):
    monkeypatch.chdir(ROOT)  # the accelerate files name the DeepSpeed JSONs relative to the repository root
    monkeypatch.setenv("DS_BUILD_OPS", "0")
    monkeypatch.setenv("DS_SKIP_CUDA_CHECK", "1")
    cfg = load_config(TINY, ["train.max_steps=2", "train.logging_steps=1", "train.max_length=128",
                             f"train.accelerate_config=configs/accelerate/{accelerate_config}",
                             "train.num_processes=1"])
    lines: list[str] = []
    rt = open_run(cfg, tmp_path / "run", log=lines.append)
    seed_stage(rt)
    events: list[dict] = []
    monkeypatch.setattr(launch, "StepBar", lambda show: _Recorder(show, events))
    with caplog.at_level(logging.INFO, logger="humpback.details"):
        result = m0_stage(rt)
    records = [(r.name, r.getMessage()) for r in caplog.records]
    assert any(name == "humpback.details" and "accelerate.commands.launch" in message and accelerate_config in message
               for name, message in records)
    # The launched process's output is in the log, line by line; its training events drove the parent's bar.
    launched = [message for name, message in records if name == "humpback.details.launch"]
    assert any("trainer step 2" in message and "train_runtime" in message for message in launched), launched
    assert not any('"event"' in message for message in launched)  # events travel apart from the output
    assert [e["event"] for e in events] == ["begin", "step", "log", "step", "log", "end"]
    assert events[0]["total"] == 2 and events[-2]["step"] == 2 and events[-2]["loss"] > 0
    assert any(line.startswith("  m0: ") and "2 steps" in line for line in lines)
    assert result.stats["steps"] == 2 and len(result.stats["losses"]) == 2
    assert json.loads((tmp_path / "run" / "models" / "m0" / "adapter_config.json").read_text())["r"] == 8
    assert not (tmp_path / "run" / "models" / "m0.partial.spec").exists()


class _Recorder:
    """The parent's bar, recording the events it is given."""

    def __init__(self, show, events):
        self.show, self.events = show, events

    def __call__(self, event):
        self.events.append(event)

    def close(self):
        pass


def test_an_event_written_in_pieces_is_read_whole(tmp_path):
    """The reader sees the file between the pieces of a line (as a loaded machine makes likely): the
    event waits for its newline; a multi-byte character cut in two survives; a line that is not an
    event is kept as bad, and the events after it still arrive."""
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    assert reader.read() == []  # not written yet
    line = (json.dumps({"event": "log", "step": 3, "loss": 1.5, "note": "µ"}, ensure_ascii=False) + "\n").encode()
    cut = line.index("µ".encode()) + 1  # inside the two bytes of µ
    for piece in (line[:5], line[5:cut]):
        with open(path, "ab") as f:
            f.write(piece)
        assert reader.read() == []
    with open(path, "ab") as f:
        f.write(line[cut:] + b'{"event": "step", "step": 4}\nnot json\n{"event": "end"}\n{"event": "beg')
    assert reader.read() == [{"event": "log", "step": 3, "loss": 1.5, "note": "µ"}, {"event": "step", "step": 4},
                             {"event": "end"}]
    assert reader.bad == ["not json"]
    assert reader.read(final=True) == [] and reader.bad == ["not json", '{"event": "beg']  # cut off by an exit


def test_event_writer_appends_whole_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    write = EventWriter(path)
    for step in range(3):
        write({"event": "step", "step": step})
    assert EventReader(path).read() == [{"event": "step", "step": s} for s in range(3)]


CHILD = textwrap.dedent("""
    import os, sys, time
    events, seen = sys.argv[1], sys.argv[2]
    def wait_for(path):  # the parent's reader signals that it has read the half line
        deadline = time.time() + 120
        while not os.path.exists(path):
            assert time.time() < deadline, "the parent never read the half line"
            time.sleep(0.01)
    sys.stderr.write("loading: 50%|#####     |"); sys.stderr.flush()   # a bar update, no newline
    line = b'{"event": "begin", "total": 2}\\n'
    with open(events, "ab", buffering=0) as f:
        f.write(line[:12])
        wait_for(seen)
        sys.stdout.write('@humpback-train {"event": "step", "step": 99}'); sys.stdout.flush()  # free-form text
        print("WARNING interleaved with the half event", file=sys.stderr, flush=True)
        f.write(line[12:] + b'{"event": "step", "step": 1}\\n{"event": "st')
        print("\\rloading: 100%|##########|", flush=True)
        f.write(b'ep", "step": 2}\\n{"event": "end"}\\n')
    print("done", flush=True)
""")


class _Signalling(EventReader):
    """The parent's reader, touching ``seen`` once it has read a line in part."""

    def __init__(self, path, seen):
        super().__init__(path)
        self.seen = seen

    def read(self, final=False):
        events = super().read(final)
        if self.pending:
            self.seen.touch()
        return events


def test_follow_reads_events_apart_from_interleaved_output(tmp_path, caplog):
    """A launched process whose output mixes bar updates, unterminated lines and text that looks like
    an event, while its events reach the file in pieces: every event arrives once and in order, and the
    output goes to the log as text."""
    events_path, seen = tmp_path / "events.jsonl", tmp_path / "seen"
    got: list[dict] = []
    with caplog.at_level(logging.INFO, logger="humpback.details"):
        code, last = launch.follow([sys.executable, "-c", CHILD, str(events_path), str(seen)],
                                   _Signalling(events_path, seen), got.append, poll_s=0.01)
    assert code == 0 and last == "done"
    assert got == [{"event": "begin", "total": 2}, {"event": "step", "step": 1}, {"event": "step", "step": 2},
                   {"event": "end"}]
    logged = [r.getMessage() for r in caplog.records if r.name == "humpback.details.launch"]
    assert "WARNING interleaved with the half event" in " ".join(logged)
    assert any('"step": 99' in message for message in logged)  # stdout is text, never an event
    assert "loading: 100%|##########|" in logged

"""Reading a wandb run file (``RUN_DIR/wandb/*/run-*.wandb``) without the network: wandb 0.31 has no
Python reader for it. The tests read back what humpback logged (history, config, artifacts and their
lineage) with :func:`read_wandb_run`; it also lets you look at an offline run before ``wandb sync``.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_wandb_records(path: Path) -> Iterator[Any]:
    """The records (``wandb_internal_pb2.Record``) of a ``run-*.wandb`` file, in order.

    The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version), then 32 KiB
    blocks of chunks, each with a 7-byte header (crc32 seeded with the type byte, little-endian length,
    type: full, first, middle, last); a block's tail shorter than a header is zero padding."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise ValueError(f"{path}: not a wandb run file")
    pos, pending = _HEADER, b""
    while True:
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
        if pos + _HEADER > len(data):
            return
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0 and length == 0:
            return  # preallocated, unwritten tail
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return  # a record cut short by a crash: what came before it stands
        pos += _HEADER + length
        if kind in (_FULL, _FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def read_wandb_run(path: Path, until: Callable[[dict], bool] = lambda r: bool(r["run"]),
                   timeout_s: float = 60) -> dict:
    """What a ``run-*.wandb`` file says: the run (id, group, job type, name), its config, its history
    rows (nested keys rebuilt, values decoded from JSON), and its artifacts, logged or used.

    wandb-core writes the file behind ``run.finish()``: a file read at once may still lack its last
    records (under load, even its run record), so it is read again until ``until`` holds, for up to
    ``timeout_s`` seconds; then the test fails naming the file and what it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = _read_run(path)
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: still incomplete after {timeout_s:.0f} s: "
                                 f"{[r.WhichOneof('record_type') for r in read_wandb_records(path)]}")
        time.sleep(0.2)


def _read_run(path: Path) -> dict:
    run: dict = {}
    config: dict = {}
    history: list[dict] = []
    logged: list[dict] = []
    used: list[dict] = []
    for record in read_wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run = {"id": r.run_id, "group": r.run_group, "job_type": r.job_type, "name": r.display_name,
                   "project": r.project}
            for item in r.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            row: dict = {}
            for item in record.history.item:
                keys = list(item.nested_key) or [item.key]
                target = row
                for key in keys[:-1]:
                    target = target.setdefault(key, {})
                target[keys[-1]] = json.loads(item.value_json)
            history.append(row)
        elif kind == "artifact":
            a = record.artifact
            entry = {"name": a.name, "type": a.type, "digest": a.digest,
                     "metadata": json.loads(a.metadata) if a.metadata else {}}
            (used if a.use_after_commit else logged).append(entry)
        elif kind == "use_artifact":
            used.append({"name": record.use_artifact.name, "type": record.use_artifact.type,
                         "id": record.use_artifact.id})
    config = {k: (v.get("value") if isinstance(v, dict) and set(v) <= {"value", "desc"} else v)
              for k, v in config.items()}
    return {"run": run, "config": config, "history": history, "logged": logged, "used": used}

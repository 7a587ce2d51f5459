"""humpback.data.records: local files (JSONL, JSON, Parquet, gzip), folders, errors, and local `datasets` folders."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from records import write_jsonl

from humpback.data import records as data_records
from humpback.data.records import expand_files, iter_hub_records, iter_records
from humpback.errors import DataError


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_jsonl_locations_and_blank_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"x": 1}\n\n{"x": 2}\n')
    assert list(iter_records(f)) == [(f"{f}:1", {"x": 1}), (f"{f}:3", {"x": 2})]


def test_json_list_and_json_lines_in_a_json_file(tmp_path):
    lst = tmp_path / "list.json"
    lst.write_text(json.dumps([{"x": 1}, {"x": 2}], indent=2))
    assert list(iter_records(lst)) == [(f"{lst}:row 1", {"x": 1}), (f"{lst}:row 2", {"x": 2})]
    lines = tmp_path / "lines.json"
    lines.write_text('{"x": 1}\n{"x": 2}\n')
    assert list(iter_records(lines)) == [(f"{lines}:1", {"x": 1}), (f"{lines}:2", {"x": 2})]


def test_gzipped_json(tmp_path):
    f = tmp_path / "a.jsonl.gz"
    with gzip.open(f, "wt") as g:
        g.write('{"x": 1}\n{"x": 2}\n')
    h = tmp_path / "b.json.gz"
    with gzip.open(h, "wt") as g:
        g.write('[{"y": 1}]')
    assert list(iter_records(f)) == [(f"{f}:1", {"x": 1}), (f"{f}:2", {"x": 2})]
    assert list(iter_records(h)) == [(f"{h}:row 1", {"y": 1})]


def test_parquet_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(data_records, "PARQUET_BATCH_ROWS", 2)
    f = write_parquet(tmp_path / "a.parquet", [{"x": i, "s": f"t{i}"} for i in range(5)])
    assert list(iter_records(f)) == [(f"{f}:row {i + 1}", {"x": i, "s": f"t{i}"}) for i in range(5)]


def test_folder_sorted_recursive_skipping_hidden_and_unsupported(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"n": "b"}])
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "a.jsonl", [{"n": "sub/a"}])
    write_parquet(tmp_path / "a.parquet", [{"n": "a"}])
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".cache").mkdir()
    write_jsonl(tmp_path / ".cache" / "c.jsonl", [{"n": "hidden"}])
    assert expand_files(tmp_path) == [tmp_path / "a.parquet", tmp_path / "b.jsonl", tmp_path / "sub" / "a.jsonl"]
    assert [r["n"] for _, r in iter_records(tmp_path)] == ["a", "b", "sub/a"]


def test_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"x": 1}\n{"x": \n{"x": 3}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON: Expecting value"):
        list(iter_records(f))


def test_malformed_line_counted_when_skipping(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"x": 1}\n{"x": \n[1, 2]\n{"x": 4}\n')
    skipped = []
    assert list(iter_records(f, skipped)) == [(f"{f}:1", {"x": 1}), (f"{f}:4", {"x": 4})]
    assert [loc for loc, _ in skipped] == [f"{f}:2", f"{f}:3"]
    assert skipped[0][1].startswith("not valid JSON: ")
    assert skipped[1][1] == "not a JSON object: got a list"


def test_non_object_in_json_list(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('[{"x": 1}, "oops"]')
    with pytest.raises(DataError, match=r"a\.json:row 2: not a JSON object: got a string"):
        list(iter_records(f))


def test_broken_json_list_names_line(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('[\n{"x": 1},\n{"x": }\n]')
    with pytest.raises(DataError, match=r"a\.json:3: not valid JSON"):
        list(iter_records(f))


def test_single_pretty_printed_object_gets_a_hint(tmp_path):
    f = tmp_path / "one.json"
    f.write_text('{\n  "x": 1\n}\n')
    with pytest.raises(DataError,
                       match=r"one\.json:1: not valid JSON: .*; a \.json file holds a JSON list of objects"):
        list(iter_records(f))


def test_corrupt_parquet(tmp_path):
    f = tmp_path / "x.parquet"
    f.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=rf"^{f}: not a readable Parquet file: "):
        list(iter_records(f))


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path / 'nope.jsonl'}: no such file or folder$"):
        list(iter_records(tmp_path / "nope.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: folder holds no \.jsonl, \.json, \.parquet"):
        list(iter_records(tmp_path / "empty"))
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(DataError, match=r"a\.csv: unsupported file type"):
        list(iter_records(tmp_path / "a.csv"))


def test_hub_records_from_local_parquet_folder(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_parquet(folder / "train.parquet", [{"text": "one"}, {"text": "two"}])
    got = list(iter_hub_records(str(folder), None, "train", streaming=True))
    assert got == [(f"{folder}[train]#0", {"text": "one"}), (f"{folder}[train]#1", {"text": "two"})]


def test_hub_records_from_local_jsonl_folder(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "data.jsonl", [{"a": 1}, {"a": 2}, {"a": 3}])
    assert [r["a"] for _, r in iter_hub_records(str(folder), streaming=True)] == [1, 2, 3]


def test_hub_errors_name_the_dataset(tmp_path):
    with pytest.raises(DataError, match=r"dataset '.*missing': no such local folder"):
        list(iter_hub_records(str(tmp_path / "missing")))
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"a": 1}])
    with pytest.raises(DataError, match=r"dataset '.*ds' split 'nosuch': cannot load: "):
        list(iter_hub_records(str(folder), split="nosuch"))

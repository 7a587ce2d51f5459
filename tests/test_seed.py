"""humpback.data.seed: the four seed formats, auto-detection, oasst selection, invalid records."""

import json

import pytest
from records import write_jsonl

from humpback.config import SeedConfig
from humpback.data.seed import SeedPair, load_seed
from humpback.errors import DataError


ALPACA = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": " Name a colour. ", "input": "", "output": "Blue."},
]
MESSAGES = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More?"},
                  {"role": "assistant", "content": "No."}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Parts?"}]},
                  {"role": "assistant", "content": "Yes."}]},
]
SELF_INSTRUCT = [
    {"instruction": "Translate to French.", "instances": [{"input": "cat", "output": "chat"},
                                                          {"input": "dog", "output": "chien"}]},
    {"instruction": "Say hi.", "instances": [{"input": "", "output": "Hi!"}]},
]


def oasst_row(mid, parent, role, text, lang="en", rank=None, deleted=False):
    return {"message_id": mid, "parent_id": parent, "role": role, "text": text, "lang": lang,
            "rank": rank, "deleted": deleted, "message_tree_id": "t"}


OASST = [
    oasst_row("a5", "r5", "assistant", "A5", rank=0),  # a reply before its root
    oasst_row("r1", None, "prompter", "Q1"),
    oasst_row("a1", "r1", "assistant", "A1", rank=0),
    oasst_row("a1b", "r1", "assistant", "A1 worse", rank=1),
    oasst_row("r2", None, "prompter", "Q2 auf Deutsch", lang="de"),
    oasst_row("a2", "r2", "assistant", "A2", lang="de", rank=0),
    oasst_row("r3", None, "prompter", "Q3"),
    oasst_row("a3", "r3", "assistant", "A3 deleted", rank=0, deleted=True),
    oasst_row("a3b", "r3", "assistant", "A3 rank 1", rank=1),
    oasst_row("p4", "a1", "prompter", "Follow-up"),
    oasst_row("a4", "p4", "assistant", "A4 to a non-root", rank=0),
    oasst_row("r5", None, "prompter", "Q5"),
]


def test_alpaca(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", ALPACA)
    res = load_seed(SeedConfig(path=str(f), format="alpaca"))
    assert res.format == "alpaca"
    assert res.pairs == [SeedPair("Add the numbers.\n\n2 and 3", "5", f"{f}:1"),
                         SeedPair("Name a colour.", "Blue.", f"{f}:2")]
    assert res.stats == {"records_read": 2, "pairs": 2, "skipped": {}, "skipped_examples": []}


def test_messages_first_user_turn_and_reply(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", MESSAGES)
    res = load_seed(SeedConfig(path=str(f), format="messages"))
    assert [(p.instruction, p.output) for p in res.pairs] == [("Hi?", "Hello."), ("Parts?", "Yes.")]


def test_self_instruct_one_pair_per_instance(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps(SELF_INSTRUCT))
    res = load_seed(SeedConfig(path=str(f), format="self_instruct"))
    assert res.pairs == [
        SeedPair("Translate to French.\n\ncat", "chat", f"{f}:row 1 instance 1"),
        SeedPair("Translate to French.\n\ndog", "chien", f"{f}:row 1 instance 2"),
        SeedPair("Say hi.", "Hi!", f"{f}:row 2"),
    ]


def test_oasst_paper_selection(tmp_path):
    f = write_jsonl(tmp_path / "oasst.jsonl", OASST)
    res = load_seed(SeedConfig(path=str(f), format="oasst", language="en"))
    assert res.pairs == [SeedPair("Q1", "A1", f"{f}:2"), SeedPair("Q5", "A5", f"{f}:12")]
    assert res.stats["records_read"] == 12
    assert res.stats["selection"] == {"roots": 3, "root_other_language": 1, "deleted": 1, "not_selected": 3,
                                      "root_without_rank0_reply": 1}


def test_oasst_all_languages(tmp_path):
    f = write_jsonl(tmp_path / "oasst.jsonl", OASST)
    res = load_seed(SeedConfig(path=str(f), format="oasst", language=None))
    assert [p.instruction for p in res.pairs] == ["Q1", "Q2 auf Deutsch", "Q5"]


@pytest.mark.parametrize("fmt, records", [("alpaca", ALPACA), ("messages", MESSAGES),
                                          ("self_instruct", SELF_INSTRUCT), ("oasst", OASST)])
def test_auto_detection(tmp_path, fmt, records):
    f = write_jsonl(tmp_path / "s.jsonl", records)
    assert load_seed(SeedConfig(path=str(f))).format == fmt


def test_undetectable_format_names_location_keys_and_formats(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as e:
        load_seed(SeedConfig(path=str(f)))
    msg = str(e.value)
    assert msg.startswith(f"{f}:1: cannot detect the seed format from the keys ['answer', 'question']")
    for name in ("messages", "alpaca", "oasst", "self_instruct"):
        assert name in msg


def test_max_examples_keeps_the_first(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", [{"instruction": f"i{k}", "output": f"o{k}"} for k in range(10)])
    res = load_seed(SeedConfig(path=str(f), max_examples=3))
    assert [p.instruction for p in res.pairs] == ["i0", "i1", "i2"]
    f2 = write_jsonl(tmp_path / "o.jsonl", OASST)
    assert [p.instruction for p in load_seed(SeedConfig(path=str(f2), max_examples=1)).pairs] == ["Q1"]


def test_invalid_pair_names_location_and_field(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", [ALPACA[0], {"instruction": "x"}, {"instruction": "y", "output": "  "}])
    detected = r" \(alpaca format, detected from the first record's keys; set seed.format to override\)$"
    with pytest.raises(DataError, match=rf"^{f}:2: missing 'output'{detected}"):
        load_seed(SeedConfig(path=str(f)))
    f2 = write_jsonl(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DataError, match=rf"^{f2}:1: no assistant reply in 'messages' \(messages format"):
        load_seed(SeedConfig(path=str(f2)))
    # A format set in the recipe is named with who set it, and auto suggested.
    f3 = write_jsonl(tmp_path / "x.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DataError, match=rf"^{f3}:1: missing 'instruction' \(alpaca format, set by "
                                        rf"recipes/tiny-cpu.yaml; try seed.format=auto\)$"):
        load_seed(SeedConfig(path=str(f3), format="alpaca"), format_set_by="recipes/tiny-cpu.yaml")


def test_invalid_records_counted_when_skipping(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join([json.dumps(ALPACA[0]), json.dumps({"instruction": "x"}), "{not json",
                            json.dumps({"instruction": "y", "output": "  "})]) + "\n")
    res = load_seed(SeedConfig(path=str(f), skip_invalid=True))
    assert len(res.pairs) == 1
    assert res.stats["records_read"] == 3
    assert res.stats["skipped"] == {"missing 'output'": 1, "not valid JSON": 1, "empty 'output'": 1}
    shown = res.stats["skipped_examples"]
    assert shown[0] == f"{f}:2: missing 'output'" and shown[2] == f"{f}:4: empty 'output'"
    assert shown[1].startswith(f"{f}:3: not valid JSON: ")


def test_zero_pairs_is_an_error_that_says_why(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", [{"instruction": "x", "output": ""}, {"instruction": "", "output": "y"}])
    with pytest.raises(DataError, match=rf"^{f}: no seed pair found: read 2 records \(alpaca format\), "
                                        r"skipped empty 'output': 1, empty 'instruction': 1$"):
        load_seed(SeedConfig(path=str(f), skip_invalid=True))
    f2 = write_jsonl(tmp_path / "o.jsonl", OASST[4:6])
    with pytest.raises(DataError, match=r"read 2 records \(oasst format\), skipped nothing; oasst selection: "):
        load_seed(SeedConfig(path=str(f2)))


def test_seed_from_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "seed_ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", ALPACA)
    res = load_seed(SeedConfig(dataset=str(folder)))
    assert res.pairs == [SeedPair("Add the numbers.\n\n2 and 3", "5", f"{folder}[train]#0"),
                         SeedPair("Name a colour.", "Blue.", f"{folder}[train]#1")]


def tree_message(mid, role, text, lang="en", rank=None, deleted=False, replies=(), parent=None):
    """A message as the official *.trees.jsonl export nests it (no parent_id unless given)."""
    m = {"message_id": mid, "role": role, "text": text, "lang": lang, "rank": rank, "deleted": deleted,
         "replies": list(replies)}
    if parent is not None:
        m["parent_id"] = parent
    return m


# The OASST rows above as export trees, plus what only trees have: a duplicate tree and one not ready.
TREES = [
    {"message_tree_id": "t1", "tree_state": "ready_for_export",
     "prompt": tree_message("r1", "prompter", "Q1", replies=[
        tree_message("a1b", "assistant", "A1 worse", rank=1),
        tree_message("a1", "assistant", "A1", rank=0, replies=[
            tree_message("p4", "prompter", "Follow-up", replies=[tree_message("a4", "assistant", "A4", rank=0)])])])},
    {"message_tree_id": "t2", "tree_state": "ready_for_export", "prompt": tree_message(
        "r2", "prompter", "Q2 auf Deutsch", lang="de",
        replies=[tree_message("a2", "assistant", "A2", lang="de", rank=0)])},
    {"message_tree_id": "t3", "tree_state": "ready_for_export",
     "prompt": tree_message("r3", "prompter", "Q3", replies=[
        tree_message("a3", "assistant", "A3 deleted", rank=0, deleted=True),
        tree_message("a3b", "assistant", "A3 rank 1", rank=1)])},
    {"message_tree_id": "t5", "tree_state": "ready_for_export",
     "prompt": tree_message("r5", "prompter", "Q5", replies=[
        tree_message("a5", "assistant", "A5", rank=0, parent="r5")])},
    {"message_tree_id": "t1", "tree_state": "ready_for_export", "prompt": tree_message("r1", "prompter", "Q1 again")},
    {"message_tree_id": "t6", "tree_state": "aborted_low_grade",
     "prompt": tree_message("r6", "prompter", "Q6", replies=[
        tree_message("a6", "assistant", "A6", rank=0)])},
]


def test_oasst_trees_export_same_selection_as_the_rows(tmp_path):
    rows = load_seed(SeedConfig(path=str(write_jsonl(tmp_path / "rows.jsonl", OASST)), format="oasst"))
    f = write_jsonl(tmp_path / "2023-04-12_oasst_ready.trees.jsonl", TREES)
    res = load_seed(SeedConfig(path=str(f)))  # auto-detected
    assert res.format == "oasst"
    assert res.pairs == [SeedPair("Q1", "A1", f"{f}:1"), SeedPair("Q5", "A5", f"{f}:4")]
    assert [(p.instruction, p.output) for p in res.pairs] == [(p.instruction, p.output) for p in rows.pairs]
    assert res.stats["records_read"] == 6
    assert res.stats["selection"] == {"roots": 3, "root_other_language": 1, "deleted": 1, "not_selected": 3,
                                      "root_without_rank0_reply": 1, "duplicate_tree": 1, "tree_not_ready": 1}


def test_oasst_reply_language_and_duplicate_messages(tmp_path):
    rows = [oasst_row("r1", None, "prompter", "Q1"), oasst_row("a1", "r1", "assistant", "Antwort", lang="de", rank=0),
            oasst_row("r2", None, "prompter", "Q2"), oasst_row("a2", "r2", "assistant", "A2", rank=0),
            oasst_row("r2", None, "prompter", "Q2 copy")]
    res = load_seed(SeedConfig(path=str(write_jsonl(tmp_path / "o.jsonl", rows)), format="oasst"))
    assert [(p.instruction, p.output) for p in res.pairs] == [("Q2", "A2")]
    assert res.stats["selection"] == {"roots": 2, "reply_other_language": 1, "duplicate_message": 1}


def test_oasst_tree_with_a_broken_message_is_a_counted_skip(tmp_path):
    tree = {"message_tree_id": "t", "prompt": tree_message("r", "prompter", "Q", replies=[{"role": "assistant"}])}
    f = write_jsonl(tmp_path / "t.trees.jsonl", [tree, TREES[3]])
    with pytest.raises(DataError, match=rf"^{f}:1 prompt.replies\[0\]: missing 'message_id' \(oasst format, detected"):
        load_seed(SeedConfig(path=str(f)))
    res = load_seed(SeedConfig(path=str(f), skip_invalid=True))
    assert [p.instruction for p in res.pairs] == ["Q5"] and res.stats["skipped"] == {"missing 'message_id'": 1}


def test_sample_is_seeded_and_not_the_first(tmp_path):
    f = write_jsonl(tmp_path / "s.jsonl", [{"instruction": f"i{k}", "output": f"o{k}"} for k in range(100)])
    a = load_seed(SeedConfig(path=str(f), sample=10), random_seed=1)
    b = load_seed(SeedConfig(path=str(f), sample=10), random_seed=1)
    c = load_seed(SeedConfig(path=str(f), sample=10), random_seed=2)
    picked = [int(p.instruction[1:]) for p in a.pairs]
    assert a.pairs == b.pairs and a.pairs != c.pairs
    assert len(picked) == 10 and picked == sorted(picked) and picked != list(range(10))
    assert a.stats["sample"] == {"asked": 10, "drawn_from": 100, "random_seed": 1} and a.stats["pairs"] == 10
    assert len(load_seed(SeedConfig(path=str(f), sample=500)).pairs) == 100


def test_duplicate_pairs_are_counted_and_kept_once_with_unique_ids(tmp_path):
    from humpback.stages.prepare import seed_rows

    records = [{"instruction": "a", "output": "x"}, {"instruction": "b", "output": "y"},
               {"instruction": "a", "output": "x"}, {"instruction": "a", "output": "x"},
               {"instruction": "a", "output": "z"}]
    f = write_jsonl(tmp_path / "s.jsonl", records)
    res = load_seed(SeedConfig(path=str(f)))
    assert res.stats["duplicates"] == 2
    assert [p.source for p in res.pairs] == [f"{f}:1", f"{f}:2", f"{f}:5"]
    assert len({r["id"] for r in seed_rows(res.pairs)}) == 3
    # Repeats are dropped before a draw, so seed.sample counts distinct pairs.
    assert len(load_seed(SeedConfig(path=str(f), sample=3), random_seed=1).pairs) == 3
    kept = load_seed(SeedConfig(path=str(f), keep_duplicates=True))
    assert kept.stats["duplicates"] == 2 and len(kept.pairs) == 5
    ids = [r["id"] for r in seed_rows(kept.pairs)]
    assert len(set(ids)) == 5 and ids[2] == ids[0] + "#2" and ids[3] == ids[0] + "#3"

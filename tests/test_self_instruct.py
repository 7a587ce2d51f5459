"""Self-Instruct (issue 15): the rendered prompts, the parsers, each filter, the ROUGE-L filter against
``rouge_score``, and a killed generation that resumes with the same pool."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from humpback.config import SELF_INSTRUCT_KEYWORDS, load_config
from humpback.data.rouge import RougePool, lcs_length, rouge_l_f, rouge_tokenizer
from humpback.data.self_instruct_text import (clean_instances, keyword_pattern, parse_classification,
                                              parse_input_first, parse_output_first, render_classify_prompt,
                                              render_instance_prompt, render_task_prompt, sample_prompt_instructions,
                                              split_tasks, task_status)
from humpback.errors import ConfigError
from humpback.prompts import template
from tiny_runs import TINY_RUNS, recipe_of

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "recipes" / recipe_of("self-instruct")
KEYWORDS = keyword_pattern(SELF_INSTRUCT_KEYWORDS)


def test_task_prompt_is_the_published_list():
    prompt = render_task_prompt(["Sort the numbers  in\nascending order:", "Name three rivers.",
                                 "Translate the sentence to French."])
    assert prompt == ("Come up with a series of tasks:\n"
                      "1. Sort the numbers in ascending order\n"
                      "2. Name three rivers.\n"
                      "3. Translate the sentence to French.\n"
                      "4.")


def test_prompt_instructions_take_two_machine_tasks_once_the_pool_has_them():
    seed = [f"seed task {i}" for i in range(20)]
    rng = random.Random(0)
    assert all(x.startswith("seed") for x in sample_prompt_instructions(rng, seed, [], 8, 2))
    one = sample_prompt_instructions(rng, seed, ["machine a"], 8, 2)
    assert len(one) == 8 and sum(x.startswith("machine") for x in one) == 1
    chosen = sample_prompt_instructions(rng, seed, ["machine a", "machine b", "machine c"], 8, 2)
    assert len(chosen) == 8 == len(set(chosen))
    assert sum(x.startswith("machine") for x in chosen) == 2 and sum(x.startswith("seed") for x in chosen) == 6


def test_split_tasks_reads_the_continuation_up_to_the_stop():
    text = " write a haiku about   autumn.\n10. Classify the sentiment of the review.\n11 . Name a prime.\n\n"
    assert split_tasks(text) == (["Write a haiku about autumn.", "Classify the sentiment of the review.",
                                  "Name a prime."], True)
    assert split_tasks(" List three colours.\n16.") == (["List three colours."], True)
    assert split_tasks(" List three colours.\n10. Name the cap") == (["List three colours.", "Name the cap"], False)


@pytest.mark.parametrize("instruction, status", [
    ("Summarise the paragraph in one sentence.", "ok"),
    ("Sort numbers.", "too_short"),  # two words
    ("Sort these numbers.", "ok"),  # three words: enough
    (" ".join(["word"] * 151), "too_long"),
    (" ".join(["word"] * 150), "ok"),
    ("Describe the image in detail.", "keyword"),
    ("Plot the data as a bar chart.", "keyword"),
    ("Open the FILES and count lines.", "keyword"),
    ("Tell me how to go to the station.", "keyword"),
    ("Explain how a mapping type works.", "ok"),  # "map" only as a whole word
    ("- Give three examples of fruit.", "punctuation"),
    ("\"Quote\" a famous line here.", "punctuation"),
    ("Écris un poème sur la mer.", "non_english"),
])
def test_task_filters_on_hand_made_instructions(instruction, status):
    assert task_status(instruction, 3, 150, KEYWORDS) == status


def test_classification_prompt_and_answers():
    prompt = render_classify_prompt("  Tell me if the review is positive. ")
    assert prompt.startswith("Can the following task be regarded as a classification task "
                             "with finite output labels?\n\n"
                             "Task: Given my personality and the job, tell me if I would be suitable.\n"
                             "Is it classification? Yes\n\n")
    assert prompt.endswith("Is it classification? No\n\n"
                           "Task: Tell me if the review is positive.\nIs it classification?")
    assert [parse_classification(t) for t in (" Yes\n", " no\n", " YES", " Maybe\n", "")] == \
        ["yes", "no", "yes", "unclear", "unclear"]


def test_instance_prompts_are_output_first_for_classification():
    clf = render_instance_prompt("Is the number even?", True)
    gen = render_instance_prompt("Write a limerick.", False)
    assert clf.startswith("Given the classification task definition and the class labels, generate an input that "
                          "corresponds to each of the class labels.")
    assert gen.startswith("Come up with examples for the following tasks. Try to generate multiple examples when "
                          "possible.")
    assert clf.endswith("\n\nTask: Is the number even?\n") and gen.endswith("\n\nTask: Write a limerick.\n")
    assert template("self_instruct_output_first") in clf and template("self_instruct_input_first") in gen


def test_instance_parsers():
    text = "Example 1\nInput: 2, 3\nOutput: 5\nExample 2\nInput: 1, 1\nOutput: 2\n"
    assert parse_input_first(text) == [("2, 3", "5"), ("1, 1", "2")]
    assert parse_input_first("Output:\n- apples\n- pears") == [("", "- apples\n- pears")]
    assert parse_input_first("just some words") == []
    assert parse_input_first("just some words", bare_output=True) == [("", "just some words")]
    assert parse_input_first("Input: a\nOutput: b\nInput: c") == [("a", "b")]
    text = "Class label: Positive\nSentence: I loved it.\nClass label: Negative\nSentence: Dull.\n"
    assert parse_output_first(text) == [("Sentence: I loved it.", "Positive"), ("Sentence: Dull.", "Negative")]
    assert parse_output_first("Positive, negative") == []


def test_clean_instances_counts_every_drop():
    rng = random.Random(0)
    kept, dropped = clean_instances([("a", "1"), ("b", "b"), ("c", ""), ("d:", "4"), ("e", "x" * 50), ("a", "1"),
                                     ("f", "6")], finished=False, max_chars=20, max_instances=5, rng=rng)
    assert kept == [("a", "1")]
    assert dropped == [(("f", "6"), "unfinished"), (("b", "b"), "invalid"), (("c", ""), "invalid"),
                       (("d:", "4"), "invalid"), (("e", "x" * 50), "too_long"), (("a", "1"), "duplicate")]
    kept, dropped = clean_instances([("q", "yes"), ("q", "no"), ("r", "ok")], True, 100, 5, rng)
    assert kept == [] and [r for _, r in dropped] == ["conflicting"] * 3
    kept, dropped = clean_instances([("", str(i)) for i in range(8)], True, 100, 5, rng)
    assert len(kept) == 5 and [r for _, r in dropped] == ["over_limit"] * 3
    assert sorted(kept + [ex for ex, _ in dropped]) == sorted(("", str(i)) for i in range(8))


# --------------------------------------------------------------------------- ROUGE-L


def instruction_sample(n: int, seed: int = 0) -> list[str]:
    """Instruction-like sentences from Python's docs, with near-copies (words dropped, swapped, added)."""
    import pydoc_data.topics

    sentences = []
    for key in sorted(pydoc_data.topics.topics):
        for s in pydoc_data.topics.topics[key].replace("\n", " ").split(". "):
            words = s.split()
            if 4 <= len(words) <= 30:
                sentences.append(" ".join(words))
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        words = rng.choice(sentences).split()
        if out and rng.random() < 0.4:  # a near-copy of an earlier one
            words = rng.choice(out).split()
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(words))
                op = rng.random()
                if op < 0.4 and len(words) > 3:
                    del words[i]
                elif op < 0.7:
                    words.insert(i, rng.choice(["the", "all", "given", "new", "Python"]))
                else:
                    j = rng.randrange(len(words))
                    words[i], words[j] = words[j], words[i]
        out.append(" ".join(words))
    return out


def test_lcs_equals_rouge_score_table():
    from rouge_score.rouge_scorer import _lcs_table

    rng = random.Random(1)
    for _ in range(200):
        a = [rng.choice("abcdefg") for _ in range(rng.randint(1, 25))]
        b = [rng.choice("abcdefgh") for _ in range(rng.randint(1, 25))]
        assert lcs_length(a, b) == _lcs_table(a, b)[-1][-1]


def test_rouge_filter_decisions_equal_rouge_score():
    """The pool filter, run as the tasks stage runs it (each novel instruction joins the pool), keeps and
    drops exactly what pairwise ``rouge_score`` decides, and scores the same F for what it drops."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    texts = instruction_sample(150)
    seed, new = texts[:40], texts[40:]
    pool = RougePool(seed, 0.7)
    reference = list(seed)
    decisions = {"kept": 0, "dropped": 0}
    for text in new:
        scores = [scorer.score(text, p)["rougeL"].fmeasure for p in reference]
        expected_novel = max(scores) <= 0.7
        m = pool.add_if_novel(text)
        assert m.novel == expected_novel, text
        if m.novel:
            reference.append(text)
            decisions["kept"] += 1
        else:
            assert m.score == scores[m.index] > 0.7
            decisions["dropped"] += 1
    assert decisions["kept"] > 15 and decisions["dropped"] > 15  # the sample exercises both sides
    assert pool.pairs_scored < len(new) * len(seed)  # the bound ruled most pairs out
    tokens = rouge_tokenizer()
    assert rouge_l_f(tokens("The cat sat."), tokens("the CAT sat on it")) == \
        scorer.score("The cat sat.", "the CAT sat on it")["rougeL"].fmeasure


def test_rouge_filter_at_the_exact_threshold():
    """F exactly 0.7 (7 common tokens of 10 and 10) is not above the threshold, as in rouge_score."""
    a = "a b c d e f g h i j"
    b = "a b c d e f g x y z"
    pool = RougePool([a], 0.7)
    from rouge_score import rouge_scorer

    f = rouge_scorer.RougeScorer(["rougeL"]).score(b, a)["rougeL"].fmeasure
    assert pool.match(b).novel == (not f > 0.7)
    assert not pool.match("a b c d e f g h x y").novel  # 8 of 10


# --------------------------------------------------------------------------- config


def test_self_instruct_recipe_parses_and_needs_no_corpus(tmp_path):
    cfg = load_config(RECIPE)
    assert cfg.augment.source == "self_instruct" and cfg.corpus is None
    with pytest.raises(ConfigError, match="missing required section 'corpus'"):
        load_config(RECIPE, ["augment.source=backtranslation"])
    with pytest.raises(ConfigError, match="'corpus' is not used by augment.source self_instruct"):
        load_config(RECIPE, ["corpus.path=x.jsonl"])
    with pytest.raises(ConfigError, match="command line: 'augment.prompt_machine_instructions'"):
        load_config(RECIPE, ["augment.prompt_machine_instructions=9"])


# --------------------------------------------------------------------------- kill and resume

# A run of its own, not conftest's tiny_run: its generation is killed midway and resumed. Its overrides are
# TINY_RUNS["self-instruct"] (tests/tiny_runs.py), on the self-instruct recipe.
FAST = TINY_RUNS["self-instruct"]


def generate_only(run_dir: Path, log=lambda _: None) -> None:
    from humpback.loop import open_run, prepare
    from humpback.stages.self_instruct import instances_stage, tasks_stage

    rt = open_run(load_config(RECIPE, FAST), run_dir, log=log)
    try:
        prepare(rt)
        tasks_stage(rt)
        instances_stage(rt)
    finally:
        rt.close()


def tables(run_dir: Path) -> dict:
    from humpback.store import read_table

    return {rel: read_table(run_dir / rel) for rel in ("augment/tasks", "augment/tasks_rejected", "augment/candidates",
                                                       "augment/rejected")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_generation_resumes_with_the_same_pool(tmp_path):
    """SIGKILL between two rounds of task generation, then resume: the same tasks, rejects and candidates
    as an uninterrupted run, and the rounds that were done are not generated again. Slow: three
    generation runs of the tiny model and a killed process, over a minute on 2 cores."""
    baseline = tmp_path / "baseline"
    generate_only(baseline)
    expected = tables(baseline)
    assert len(expected["augment/tasks"]) == 12 and expected["augment/candidates"]

    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])}
    # The generation stages alone, holding after the first round until killed, so that the kill lands between rounds.
    script = ("import sys; from paused_humpback import hold_after_shard; hold_after_shard('tasks'); "
              "from test_self_instruct import generate_only; from pathlib import Path; "
              "generate_only(Path(sys.argv[1]), print)")
    cmd = [sys.executable, "-c", script, str(run_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=open(tmp_path / "1.log", "w"), stderr=subprocess.STDOUT)
    markers = run_dir / ".progress" / "tasks"
    deadline = time.time() + 600
    while not (markers.exists() and list(markers.glob("part-*.json"))):
        assert proc.poll() is None, (tmp_path / "1.log").read_text()
        assert time.time() < deadline, "no round finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(markers.glob("part-*.json")))
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["tasks"]["status"] == "running"

    lines: list[str] = []
    generate_only(run_dir, lines.append)
    assert f"[tasks] running (did not finish last time): {done} rounds already done" in lines, lines
    assert tables(run_dir) == expected  # the same pool and candidates: nothing lost, nothing generated twice
    log = []
    generate_only(run_dir, log.append)
    assert "[tasks] up to date, skipped" in log and "[augment] up to date, skipped" in log


# --------------------------------------------------------------------------- sampling settings


def test_cut_at_stop_keeps_the_earliest_stop():
    from humpback.generation.base import cut_at_stop

    assert cut_at_stop(" a task\n10. another\n\nrest", ("\n\n", "\n16", "16.")) == " a task\n10. another\n\n"
    assert cut_at_stop(" x\n15. y\n16. z", ("\n\n", "\n16", "16.")) == " x\n15. y\n16"
    assert cut_at_stop("no stop here", ("\n\n",)) == "no stop here"


def test_presence_penalty_on_the_hf_backend(tiny_model_dir):
    """Greedy decoding with a large presence penalty never picks a token it already generated; the
    text is cut after the first stop string."""
    from humpback.generation.base import SamplingParams
    from humpback.generation.hf import HFGenerator

    gen = HFGenerator(str(tiny_model_dir), batch_size=2)
    prompts = ["Come up with a series of tasks:\n1.", "Task: Name a colour.\nOutput:"]
    plain = gen.decoder.generate([gen.tokenizer(p)["input_ids"] for p in prompts], 24, [-1])
    penalised = gen.decoder.generate([gen.tokenizer(p)["input_ids"] for p in prompts], 24, [-1],
                                     presence_penalty=1e4)
    assert any(len(set(t)) < len(t) for t in plain)  # the random model repeats itself when greedy...
    assert all(len(set(t)) == len(t) for t in penalised)  # ...and not with the penalty
    text = gen.generate(prompts[:1], SamplingParams(max_new_tokens=24))[0]
    stop = text[5:7]
    assert gen.generate(prompts[:1], SamplingParams(max_new_tokens=24, stop=(stop,)))[0] == \
        text[: text.find(stop) + len(stop)]
    gen.close()


def test_seed_tasks_in_the_self_instruct_format(tmp_path):
    from humpback.config import SeedConfig
    from humpback.data.seed import SeedTask, load_seed_tasks

    path = tmp_path / "seed_tasks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "seed_task_0", "instruction": "Is the review positive?", "is_classification": True,
         "instances": [{"input": "Great food.", "output": "Yes"}, {"input": "Cold soup.", "output": "No"}]},
        {"id": "seed_task_1", "instruction": "Name three rivers.", "instances": [{"input": "", "output": "Nile"}]},
    ]) + "\n")
    tasks, fmt = load_seed_tasks(SeedConfig(path=str(path)))
    assert fmt == "self_instruct"
    assert tasks == [SeedTask("Is the review positive?", (("Great food.", "Yes"), ("Cold soup.", "No")), True,
                              f"{path}:1"),
                     SeedTask("Name three rivers.", (("", "Nile"),), False, f"{path}:2")]
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Add 2 and 2.", "output": "4"}) + "\n")
    assert load_seed_tasks(SeedConfig(path=str(alpaca)))[0][0].instances == (("", "4"),)

"""Issue 12: every model of a run evaluated on the same yardstick, on the tiny recipe: held-out pairs kept
out of training, the eval stats files, `humpback eval` (resume, another reference, a replayed run), the
AlpacaEval export, bad input stopped before any model loads, and a kill in the middle of judging."""

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from humpback import cli, layout
from humpback.eval_command import evaluate_run
from humpback.evaluation.alpaca_eval import read_model_outputs
from humpback.evaluation.heldout import heldout_messages, tokenize_example
from humpback.evaluation.prompt_set import load_prompts
from humpback.evaluation.winrate import summarize
from humpback.store import hash_file, read_table
from humpback.view.figures import EVAL_KEYS

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# The tiny recipe (8 held-out pairs, logits judging), two iterations, eval shards of 4 prompts (two per stage):
# conftest's shared run "sharded" (tests/tiny_runs.py), which test_resume reads too.
MODELS = ["base", "m0", "iter_1", "iter_2"]


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    """(run folder, console lines) of the shared run; a test that evaluates again works on a copy."""
    shared = tiny_run("sharded")
    return shared.run_dir, shared.lines


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_heldout_pairs_never_reach_a_training_mixture(evaluated):
    run_dir, _ = evaluated
    held = read_table(run_dir / layout.HELDOUT)
    assert len({p["instruction"] for p in held}) == 8
    instructions = {p["instruction"] for p in held}
    outputs = {p["output"] for p in held}
    seed = read_table(run_dir / layout.SEED)
    assert not instructions & {p["instruction"] for p in seed} and not outputs & {p["output"] for p in seed}
    for rel in (layout.BACKWARD_TRAIN, layout.M0_TRAIN, layout.iteration(1).mixture, layout.iteration(2).mixture):
        for row in read_table(run_dir / rel):
            texts = [m["content"] for m in row["messages"]]
            assert not any(t in instructions for t in texts), rel
            assert not any(o in t for t in texts for o in outputs), rel  # the backward prompt quotes outputs
    assert not outputs & {c["output"] for c in read_table(run_dir / layout.CANDIDATES)}
    prompts = read_table(run_dir / layout.EVAL_PROMPTS)
    assert {p["instruction"] for p in prompts} == instructions and {p["output"] for p in prompts} <= outputs


def test_every_model_has_its_stats_file_with_the_documented_keys(evaluated):
    run_dir, lines = evaluated
    prompts = read_table(run_dir / layout.EVAL_PROMPTS)
    for label in MODELS:
        ev = layout.evaluation(label)
        stats = json.loads((run_dir / ev.stats).read_text())
        assert list(stats) == list(EVAL_KEYS)
        answers = read_table(run_dir / ev.answers)
        assert [a["prompt_id"] for a in answers] == [p["prompt_id"] for p in prompts]
        assert {a["temperature"] for a in answers} == {0.0}
        assert {a["system_prompt"] for a in answers} == {
            "Answer in the style of an AI Assistant. Answer with knowledge from web search."}
        assert stats["answers"] == len(prompts)
        assert stats["answer_chars_mean"] == pytest.approx(sum(len(a["output"]) for a in answers) / len(answers))
        losses = read_table(run_dir / ev.heldout_loss)
        assert stats["heldout_loss"] == pytest.approx(sum(r["loss_sum"] for r in losses)
                                                      / sum(r["tokens"] for r in losses))
        assert 5 < stats["heldout_loss"] < 10  # a random 2,000-token model: about ln 2000 = 7.6
        judged = read_table(run_dir / ev.judgements)
        assert sorted((j["prompt_id"], j["order"]) for j in judged) == sorted(
            (p["prompt_id"], o) for p in prompts for o in ("model_first", "reference_first"))
        assert all(j["mode"] == "logits" and j["p_a"] + j["p_b"] == pytest.approx(1) for j in judged)
        again = summarize([j["order"] for j in judged], [j["outcome"] for j in judged],
                          [j["prompt_id"] for j in judged],
                          {a["prompt_id"]: len(a["output"]) for a in answers},
                          {p["prompt_id"]: len(p["output"]) for p in prompts}, 2000, 42)
        for key in ("win_rate", "win_rate_ci", "lc_win_rate", "position_consistency"):
            assert stats[key] == pytest.approx(again[key]), key
        assert stats["reference"] == "outputs" and stats["judge"] == "builtin:tiny-llama"
        assert stats["exact_match"] is None and stats["lm_eval"] is None
    assert json.loads((run_dir / layout.evaluation("iter_1").stats).read_text())["length_ratio"] is not None
    metrics = [json.loads(line) for line in (run_dir / layout.METRICS).read_text().splitlines()]
    assert {(m["iteration"], m["name"]) for m in metrics if m["stage"] == "eval"} >= {
        (s, n) for s in (-1, 0, 1, 2) for n in ("heldout_loss", "win_rate", "win_rate_ci_low", "answer_chars_mean")}
    # the loop evaluated base and M0 right after M0 was trained, model 1 right after it was
    order = [line.split("]")[0][1:] for line in lines if line.startswith("[") and "running" in line]
    assert order.index("m0") < order.index("eval/base/loss") < order.index("eval/m0/judge") < order.index("augment")
    assert order.index("iter_1/train") < order.index("iter_1/eval/judge")


def test_heldout_loss_tokens_are_the_trainers_own(evaluated, tiny_model_dir, tmp_path):
    from humpback.chat import load_chat_tokenizer
    from humpback.config import TrainConfig
    from humpback.training import TrainJob, build_trainer

    run_dir, _ = evaluated
    held = read_table(run_dir / layout.HELDOUT)
    rows = [{"messages": heldout_messages(p)} for p in held]
    trainer = build_trainer(TrainJob(str(tiny_model_dir), TrainConfig(max_length=128), seed=0, progress=False), rows,
                            tmp_path)
    tok = load_chat_tokenizer(str(tiny_model_dir), adapter=run_dir / layout.M0)  # the adapter's saved tokenizer
    ours = [tokenize_example(tok, r["messages"], 128) for r in rows]
    theirs = [(ex["input_ids"], ex["labels"]) for ex in trainer.train_dataset]
    assert ours == theirs


def test_humpback_eval_resumes_prints_the_table_and_exports_for_alpaca_eval(evaluated, tmp_path, capsys):
    run_dir = _copy(evaluated[0], tmp_path / "run")
    out = tmp_path / "alpaca"
    assert cli.main(["eval", str(run_dir), "--export", "alpaca_eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "running" not in printed and "[iter_1/eval/judge] up to date, skipped" in printed
    assert "Did it get better?" in printed
    for label in MODELS:
        assert any(line.startswith(label + " ") for line in printed.splitlines()), label
    index = json.loads((out / "export.json").read_text())
    for label in MODELS:
        records = read_model_outputs(out / label / "model_outputs.json")
        answers = read_table(run_dir / layout.evaluation(label).answers)
        assert records == [{"instruction": a["instruction"], "output": a["output"],
                            "generator": index["models"][label]["generator"], "dataset": "heldout"} for a in answers]
    # round trip: an exported file is an eval prompt set whose outputs are reference outputs
    back = load_prompts(str(out / "iter_1" / "model_outputs.json"))
    answers = read_table(run_dir / layout.evaluation("iter_1").answers)
    assert [(p["instruction"], p["output"], p["dataset"]) for p in back] == [
        (a["instruction"], a["output"], "heldout") for a in answers]
    reference = read_model_outputs(out / "reference" / "model_outputs.json")
    assert [r["output"] for r in reference] == [p["output"] for p in read_table(run_dir / layout.EVAL_PROMPTS)]


def test_another_reference_and_judge_mode_rejudge_without_answering_again(evaluated, tmp_path):
    run_dir = _copy(evaluated[0], tmp_path / "run")
    lines: list[str] = []
    stats = evaluate_run(run_dir, overrides=["eval.reference=previous", "eval.judge_mode=generate",
                                             "eval.judge_max_new_tokens=6", "tracking.progress=false"],
                                             log=lines.append)
    ran = [line.split("]")[0][1:] for line in lines if line.startswith("[") and "running" in line]
    assert ran == ["eval/m0/judge", "iter_1/eval/judge", "iter_2/eval/judge"]  # the base model has no previous one
    by = {s["model"]: s for s in stats}
    assert by["base"]["reference"] is None and by["base"]["win_rate"] is None
    assert by["m0"]["reference"] == "base" and by["iter_1"]["reference"] == "m0"
    assert by["iter_2"]["reference"] == "iter_1"
    judged = read_table(run_dir / layout.evaluation("iter_1").judgements)
    assert all(j["mode"] == "generate" and j["raw"] is not None for j in judged)
    failures = sum(j["parse_status"] != "ok" for j in judged)
    assert by["iter_1"]["parse_failures"] == failures
    assert by["iter_1"]["prompts_judged"] == len({j["prompt_id"] for j in judged if j["outcome"] is not None})


def test_eval_on_a_replayed_run(evaluated, tmp_path):
    from humpback.replay import replay

    run_dir = evaluated[0]
    out = tmp_path / "replay"
    replay(run_dir, out, 1, overrides=["tracking.progress=false"], log=lambda _: None)
    assert read_table(out / layout.HELDOUT) == read_table(run_dir / layout.HELDOUT)
    stats = evaluate_run(out, overrides=["tracking.progress=false"], log=lambda _: None)
    assert [s["model"] for s in stats] == ["base", "iter_1"]  # a replay trains model K alone
    assert read_table(out / layout.EVAL_PROMPTS) == read_table(run_dir / layout.EVAL_PROMPTS)
    base = json.loads((run_dir / layout.evaluation("base").stats).read_text())
    assert stats[0]["heldout_loss"] == pytest.approx(base["heldout_loss"])  # the same yardstick


def test_bad_input_is_a_clear_error_before_any_model_loads(evaluated, tmp_path, capsys):
    # an eval prompt file without 'instruction'
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"instruction": "ok?"}\n{"question": "no instruction here"}\n')
    args = ["run", str(TINY), "--run-dir", str(tmp_path / "r1"), "--quiet", f"eval.prompts={bad}"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: eval prompt has no 'instruction' field (eval.prompts '{bad}')" in err
    assert not (tmp_path / "r1" / "models").exists()
    # a held-out size larger than the seed
    assert cli.main(["prepare", str(TINY), "--run-dir", str(tmp_path / "r2"), "seed.heldout=500"]) == 2
    err = capsys.readouterr().err
    assert "'seed.heldout' (500) holds out 500 instructions, but the seed has only" in err
    assert "python-docs-seed" in err
    # an unreachable judge endpoint: nothing is computed, nothing is lost
    run_dir = _copy(evaluated[0], tmp_path / "run")
    before = (run_dir / layout.MANIFEST).read_text()
    port = _free_port()
    assert cli.main(["eval", str(run_dir), f"eval.judge_api_base=http://127.0.0.1:{port}/v1", "eval.judge=x/y"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"humpback: error: 'eval.judge_api_base': cannot reach the judge at http://127.0.0.1:{port}/v1")
    assert (run_dir / layout.MANIFEST).read_text() == before
    # overrides that would change what the run trained are refused
    assert cli.main(["eval", str(run_dir), "train.lora_r=4"]) == 2
    assert "humpback eval takes eval.*, generation.* and tracking.* overrides" in capsys.readouterr().err


def test_a_server_that_answers_at_all_passes_the_endpoint_check():
    from humpback.generation.openai import check_endpoint

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_endpoint(f"http://127.0.0.1:{server.server_port}/v1", "eval.judge_api_base")
    finally:
        server.shutdown()


def test_kill_in_the_middle_of_judging_then_resume_redoes_nothing_finished(evaluated, tmp_path):
    # A new judge setting re-judges M0 (--iteration 0): two shards of 4 prompts, 8 judgements each.
    change = ["eval.judge_mode=generate", "eval.judge_max_new_tokens=4", "tracking.progress=false"]
    reference = _copy(evaluated[0], tmp_path / "uninterrupted")
    evaluate_run(reference, iteration=0, overrides=change, log=lambda _: None)
    run_dir = _copy(evaluated[0], tmp_path / "run")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The judging holds after its first shard until the kill, however late the test sees the marker.
    cmd = [sys.executable, str(Path(__file__).parent / "paused_humpback.py"), "eval/m0/judge", "eval", str(run_dir),
           "--iteration", "0", *change]
    markers = run_dir / ".progress" / "eval_m0_judge"
    shutil.rmtree(markers)  # the markers of the judging already done, whose key is not this one's
    proc = subprocess.Popen(cmd, env=env, stdout=open(tmp_path / "1.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 900
    while not (markers.exists() and list(markers.glob("part-*.json"))):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "1.log").read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = run_dir / layout.evaluation("m0").judgements / "part-00000.parquet"
    stamp = (first.stat().st_mtime_ns, hash_file(first))
    lines: list[str] = []
    evaluate_run(run_dir, iteration=0, overrides=change, log=lines.append)
    assert ("[eval/m0/judge] running (did not finish last time); reads eval/m0/answers, eval/prompts.parquet; "
            "1 of 2 shards done") in lines, "\n".join(lines)
    assert (first.stat().st_mtime_ns, hash_file(first)) == stamp  # the finished shard was not redone
    assert "[eval/m0/answers] up to date, skipped" in lines
    ev = layout.evaluation("m0")
    assert read_table(run_dir / ev.judgements) == read_table(reference / ev.judgements)
    assert json.loads((run_dir / ev.stats).read_text()) == json.loads((reference / ev.stats).read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LM_TASK = """task: humpback_tiny_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
LM_DATA = [{"question": "What does len return?", "choices": ["the length", "the colour"], "answer": 0},
           {"question": "What does print do?", "choices": ["writes text", "sorts a list"], "answer": 0},
           {"question": "Which keyword defines a function?", "choices": ["class", "def"], "answer": 1}]


def _local_task(folder: Path) -> Path:
    folder.mkdir()
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in LM_DATA))
    (folder / "tiny.yaml").write_text(LM_TASK.format(data=data))
    return folder


def test_lm_eval_local_task_runs_on_the_tiny_model_offline(evaluated, tmp_path):
    pytest.importorskip("lm_eval")
    run_dir = _copy(evaluated[0], tmp_path / "run")
    tasks = _local_task(tmp_path / "tasks")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "humpback", "eval", str(run_dir), "--iteration", "1",
                           "eval.lm_eval_tasks=[humpback_tiny_choice]", f"eval.lm_eval_include_path={tasks}"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / layout.evaluation("iter_1").lm_eval).read_text())
    acc = result["metrics"]["humpback_tiny_choice"]["acc"]
    assert acc in (0, 1 / 3, 2 / 3, 1) and result["n_samples"]["humpback_tiny_choice"]["effective"] == 3
    stats = json.loads((run_dir / layout.evaluation("iter_1").stats).read_text())
    assert stats["lm_eval"] == {"humpback_tiny_choice/acc": acc}
    assert "humpback_tiny_choice/acc" in proc.stdout  # a column of the table
    assert "[iter_1/eval/lm_eval] running (new)" in proc.stdout


def test_an_lm_eval_task_that_does_not_exist_stops_before_any_model_loads(evaluated, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    run_dir = _copy(evaluated[0], tmp_path / "run")
    tasks = _local_task(tmp_path / "tasks")
    before = (run_dir / layout.MANIFEST).read_text()
    code = cli.main(["eval", str(run_dir), "eval.lm_eval_tasks=[humpback_tiny_chioce]",
                     f"eval.lm_eval_include_path={tasks}"])
    err = capsys.readouterr().err
    assert code == 2 and "'eval.lm_eval_tasks': lm-eval has no task 'humpback_tiny_chioce'" in err
    assert "did you mean 'humpback_tiny_choice'" in err
    assert (run_dir / layout.MANIFEST).read_text() == before


def test_prompts_with_reference_answers_get_exact_match_with_its_interval(evaluated, tmp_path, capsys):
    from humpback.evaluation.exact import wilson_interval

    run_dir = _copy(evaluated[0], tmp_path / "run")
    answers = read_table(run_dir / layout.evaluation("iter_1").answers)
    # The held-out instructions again, in the same order and shards (greedy answers come out the same):
    # six carry the answer model 1 gave as their exact reference, two a wrong one.
    prompts = tmp_path / "world.jsonl"
    prompts.write_text("".join(json.dumps({"instruction": a["instruction"],
                                           "reference": a["output"] if i < 6 else a["output"] + " (not this)"}) + "\n"
                               for i, a in enumerate(answers)))
    # no reference outputs to judge against: the default eval.reference is refused, naming the key
    assert cli.main(["eval", str(run_dir), "--iteration", "1", f"eval.prompts={prompts}"]) == 2
    assert "'eval.reference: outputs' needs a reference 'output' on every eval prompt" in capsys.readouterr().err
    stats = evaluate_run(run_dir, iteration=1, overrides=[f"eval.prompts={prompts}", "eval.reference=none",
                                                          "tracking.progress=false"], log=lambda _: None)[0]
    assert (stats["exact_match"], stats["exact_match_n"]) == (6 / 8, 8)
    assert stats["exact_match_ci"] == list(wilson_interval(6, 8))
    assert stats["win_rate"] is None and stats["reference"] is None
    rows = read_table(run_dir / layout.evaluation("iter_1").answers)
    assert [r["exact_match"] for r in rows] == [True] * 6 + [False] * 2
    assert [r["dataset"] for r in rows] == ["world"] * 8

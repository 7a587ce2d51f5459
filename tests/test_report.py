"""`humpback report` and `humpback inspect` on a tiny run made by the `humpback` command itself (tracking
off, in a subprocess that also shows wandb was never imported): the report's images are PNG plots of
the run's own numbers, a run in progress is shown as far as it got, and a headless chromium renders it."""

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from browser import LAUNCH_ARGS, chromium, keep_screenshot, playwright
from humpback import cli
from humpback.view.report import write_report
from humpback.store import read_table, write_table

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cli_run(tiny_cli_run):
    """The session's tiny run (tests/conftest.py), shared with the review tests."""
    return tiny_cli_run


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.plots = {}
        self.marks = {}  # per plot, per panel: how many marks of data it holds (read back from the figure)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and "plot" in a.get("class", ""):
            self.plots[a["data-plot"]] = (a["src"], json.loads(a["data-values"]))
            self.marks[a["data-plot"]] = json.loads(a["data-marks"])


def _plots(html_text):
    parser = _Images()
    parser.feed(html_text)
    return parser.plots


def test_run_writes_the_report_prints_its_path_and_imports_no_wandb(cli_run):
    run_dir, stdout, stderr = cli_run
    assert f"Report: {run_dir / 'report.html'}" in stdout
    assert stdout.index("Did it get better?") < stdout.index("Per-iteration summary")  # the summary opens with it
    assert (run_dir / "report.html").stat().st_size > 10_000
    assert json.loads(stdout.splitlines()[-1]) == []  # tracking.backend none: wandb never imported
    # quiet: no progress bars, no printed Trainer log dicts
    for text in (stdout, stderr):
        assert "Loading weights" not in text and "{'loss'" not in text and "'train_runtime'" not in text
        assert "it/s]" not in text


def test_report_images_are_plots_of_the_runs_numbers(cli_run, tmp_path, capsys):
    import matplotlib.image

    run_dir = cli_run[0]
    out = tmp_path / "r.html"
    assert cli.main(["report", str(run_dir), "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    plots = _plots(out.read_text())
    assert set(plots) == {"eval", "funnel", "score_histograms", "rates", "lengths", "losses"}
    for name, (src, _) in plots.items():
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == PNG and png[12:16] == b"IHDR"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 300 and height > 200, name
        pixels = matplotlib.image.imread(io.BytesIO(png))
        assert pixels.std() > 0.05, f"{name} is blank"

    candidates = read_table(run_dir / "augment/candidates")
    funnel = json.loads((run_dir / "data/funnel.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    curated = {k: read_table(run_dir / f"iter_{k}/curated.parquet") for k in (1, 2)}
    for k in (1, 2):
        scores = read_table(run_dir / f"iter_{k}/scores")
        drawn = plots["score_histograms"][1][str(k)]  # bar heights read back from the figure
        assert drawn == {**{str(i): sum(s["score"] == i and s["parse_status"] == "ok" for s in scores)
                            for i in range(1, 6)},
                         "fail": sum(s["parse_status"] != "ok" for s in scores)}
        assert sum(drawn.values()) == len(candidates)
    funnel_drawn = dict(zip(*[plots["funnel"][1][key] for key in ("labels", "values")]))
    assert funnel_drawn == {"documents": funnel["documents"], "sections": funnel["sections"],
                            "segments": funnel["kept"],
                            "candidates": len(candidates), "curated A(1)": len(curated[1]),
                            "curated A(2)": len(curated[2])}
    rates = plots["rates"][1]
    assert rates["iterations"] == [1, 2]
    assert rates["acceptance_rate"] == pytest.approx([len(curated[k]) / len(candidates) for k in (1, 2)])
    lengths = plots["lengths"][1]
    for name, field in (("instruction_chars", "instruction"), ("output_chars", "output")):
        edges = lengths[name]["edges"]
        for k in (1, 2):
            counts, _ = np.histogram([len(c[field]) for c in curated[k]], bins=edges)
            assert lengths[name][f"A({k})"] == counts.tolist()
        counts, _ = np.histogram([len(c[field]) for c in candidates], bins=edges)
        assert lengths[name]["candidates"] == counts.tolist()
    evals = plots["eval"][1]
    assert evals["models"] == ["base", "m0", "iter_1", "iter_2"]
    for key in ("heldout_loss", "win_rate", "lc_win_rate", "answer_chars_mean"):
        assert evals[key] == [json.loads((run_dir / p / "stats.json").read_text())[key]
                              for p in ("eval/base", "eval/m0", "iter_1/eval", "iter_2/eval")], key
    losses = plots["losses"][1]
    for label, stage in (("model backward", "backward"), ("model m0", "m0"), ("model 1", "iter_1/train"),
                         ("model 2", "iter_2/train")):
        assert losses[label] == [[p["step"], pytest.approx(p["loss"])]
                                 for p in manifest["stages"][stage]["stats"]["losses"]]


def test_report_of_a_run_in_progress_shows_what_is_missing_and_escapes_text(cli_run, tmp_path):
    run_dir = tmp_path / "partial"
    shutil.copytree(cli_run[0], run_dir)
    shutil.rmtree(run_dir / "iter_2")
    shard = sorted((run_dir / "augment/candidates").glob("*.parquet"))[0]
    import pyarrow.parquet as pq

    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0]["instruction"] = "<script>alert('x')</script> & <b>bold</b>"
    write_table(shard, rows, schema=table.schema)
    text = write_report(run_dir, n_pairs=50).read_text()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "<script>alert" not in text and "<b>bold" not in text
    assert "Missing" in text and "iter_2 scores" in text and "No scored pairs yet" in text
    assert list(_plots(text)["score_histograms"][1]) == ["1"]
    # Nothing but a config and a manifest: still a report, every plot shown as not there yet.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare)
    (bare / "manifest.json").write_text('{"format_version": 1, "stages": {}}')
    text = write_report(bare).read_text()
    assert _plots(text) == {} and text.count("Nothing to plot yet") == 5


def test_inspect_prints_pairs(cli_run, capsys):
    run_dir = cli_run[0]
    assert cli.main(["inspect", str(run_dir), "--iteration", "2", "--sample", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    candidates = read_table(run_dir / "augment/candidates")
    scores = {s["candidate_id"]: s for s in read_table(run_dir / "iter_2/scores")}
    assert out.startswith(f"iteration 2: {len(candidates)} scored, {len(candidates)} accepted (threshold 1)")
    blocks = out.split("\n-- ")[1:]
    assert len(blocks) == 3
    for block in blocks:
        cid = block.split("[", 1)[1].split("]", 1)[0]
        assert f"score {scores[cid]['score']}" in block and "ACCEPTED" in block
        assert "instruction:" in block and "output:" in block and f"judge:       {scores[cid]['raw'][:40]}" in block
    assert cli.main(["inspect", str(run_dir), "--iteration", "1", "--min-score", "6"]) == 0
    assert "showing 0 with score >= 6" in capsys.readouterr().out
    assert cli.main(["inspect", str(run_dir), "--iteration", "7"]) == 2
    assert "iteration 7 has no scored pairs" in capsys.readouterr().err


@pytest.mark.skipif(chromium() is None,
                    reason="no chromium (scripts/ensure_chromium.sh installs Debian's; make test runs it)")
def test_report_renders_in_headless_chromium(cli_run, tmp_path):
    report = cli_run[0] / "report.html"
    n_plots = len(_plots(report.read_text()))
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", report.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    # The page's own script marks how many plots decoded with a natural width > 0.
    assert f'data-plots-rendered="{n_plots}/{n_plots}"' in proc.stdout, proc.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run(cmd[:-2] + ["--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=90)
    assert shot.read_bytes()[:8] == PNG and len(shot.read_bytes()) > 50_000


def _marks(html_text: str) -> dict:
    parser = _Images()
    parser.feed(html_text)
    return parser.marks


def test_world_report_plots_only_what_the_run_measured(tiny_world_run, tmp_path):
    """The world recipe's run measures exact match (no held-out loss, no win rate) and its likelihood
    judge's dev-set precision, recall and AUC: those are drawn, with their intervals, and nothing else."""
    run_dir = tiny_world_run
    text = write_report(run_dir, tmp_path / "r.html").read_text()
    plots = _plots(text)
    assert set(plots) == {"eval", "judges", "funnel", "score_histograms", "rates", "lengths", "losses"}
    marks = _marks(text)
    assert set(marks) == set(plots)
    for name, panels in marks.items():
        assert panels and all(n > 0 for n in panels.values()), (name, panels)  # no empty chart
    evals = plots["eval"][1]
    assert list(marks["eval"]) == ["exact match, 95% CI (higher is better)", "mean answer length (characters)"]
    assert "heldout_loss" not in evals and "win_rate" not in evals
    stats = [json.loads((run_dir / p / "stats.json").read_text()) for p in ("eval/base", "eval/m0", "iter_1/eval",
                                                                            "iter_2/eval")]
    assert evals["exact_match"] == [s["exact_match"] for s in stats]
    assert evals["exact_match_ci"] == [s["exact_match_ci"] for s in stats]
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    dev = [manifest[f"iter_{k}/dev"]["stats"]["auc"] for k in (1, 2)]
    assert plots["judges"][1]["likelihood (selects)"] == [[k, d["auc"], d["low"], d["high"]]
                                                          for k, d in zip((1, 2), dev)]
    select = [manifest[f"iter_{k}/select"]["stats"]["dev"] for k in (1, 2)]
    assert plots["rates"][1]["dev precision"] == [s["precision"] for s in select]
    assert plots["rates"][1]["dev recall"] == [s["recall"] for s in select]
    assert "judge choice mass" not in plots["rates"][1]  # a rating judge's figure: this judge has none
    # The summary shows the figures the run has, one row each; a likelihood run has no expected score.
    for absent in ("mean expected score", "judge choice mass", "DPO loss", "preference pairs", "held-out loss"):
        assert f">{absent}<" not in text, absent
    for present in ("mean judge value", "dev precision", "exact match [95% CI]", "dev AUC [95% CI]"):
        assert f">{present}<" in text, present
    assert "data-judge='likelihood'" in text and ">mean log-prob per token<" in text
    assert ">None<" not in text and "{&quot;logprob&quot;" not in text  # no None cell, no raw JSON


# What the page looks like at 1280 px: how wide the document is, and each plot's decoded width and marks.
_PAGE_FACTS = """() => ({
  scrollWidth: document.documentElement.scrollWidth,
  plots: Array.from(document.querySelectorAll('img.plot')).map(i => ({
    name: i.dataset.plot, width: i.naturalWidth, shown: i.getBoundingClientRect().width,
    marks: JSON.parse(i.dataset.marks)})),
  pairCells: Array.from(document.querySelectorAll('table.pairs td')).map(td => td.textContent.trim()),
  pairJudges: Array.from(document.querySelectorAll('table.pairs')).map(t => t.dataset.judge)
})"""


@pytest.mark.skipif(chromium() is None, reason="no chromium (scripts/ensure_chromium.sh installs Debian's)")
@pytest.mark.skipif(playwright() is None, reason="playwright is not installed (the system chromium is used)")
def test_reports_fit_1280_pixels_with_no_empty_chart(tiny_world_run, cli_run, tmp_path):
    """Headless chromium at 1280x800 on the world run's report and the tiny run's: no horizontal overflow,
    every plot decoded and every panel of it holding data, and the likelihood judge's pairs without a
    'None' cell. Screenshots go to the test's folder (and to $HUMPBACK_SCREENSHOTS when set)."""
    reports = {"world": write_report(tiny_world_run, tmp_path / "world.html"),
               "tiny": write_report(cli_run[0], tmp_path / "tiny.html")}
    with playwright()() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for name, report in reports.items():
                page.goto(report.as_uri())
                page.wait_for_selector("body[data-plots-rendered]")
                facts = page.evaluate(_PAGE_FACTS)
                shot = tmp_path / f"report-{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                keep_screenshot(shot)
                assert shot.read_bytes()[:8] == PNG
                assert facts["scrollWidth"] <= 1280, (name, facts["scrollWidth"])
                assert len(facts["plots"]) >= 6, name
                for plot in facts["plots"]:
                    assert plot["width"] > 0 and 0 < plot["shown"] <= 1280, (name, plot)
                    assert all(n > 0 for n in plot["marks"].values()), (name, plot)
                assert facts["pairCells"], name
                if name == "world":
                    assert set(facts["pairJudges"]) == {"likelihood"}
                    assert "None" not in facts["pairCells"]
                    assert not any(c.startswith("{") for c in facts["pairCells"])
        finally:
            browser.close()


def test_inspect_shows_a_likelihood_judges_figures_not_its_json(tiny_world_run, capsys):
    assert cli.main(["inspect", str(tiny_world_run), "--iteration", "1", "--sample", "3"]) == 0
    out = capsys.readouterr().out
    scores = {s["candidate_id"]: s for s in read_table(tiny_world_run / "iter_1/scores")}
    blocks = out.split("\n-- ")[1:]
    assert len(blocks) == 3
    for block in blocks:
        cid = block.split("[", 1)[1].split("]", 1)[0]
        detail = json.loads(scores[cid]["raw"])
        assert f"mean log-prob per token {scores[cid]['value']:.3f}, output tokens {detail['tokens']}" in block
        assert "None" not in block and "{" not in block and "judge:" not in block

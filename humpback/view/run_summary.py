"""The end-of-run summary ``humpback run`` prints: the "Did it get better?" table of every evaluated model
(:mod:`.scoreboard`), then one row per iteration from the iterations' figures."""

from __future__ import annotations

from pathlib import Path

from .. import layout


def format_summary(summaries: list[dict], run_dir: Path) -> str:
    """The eval table ("Did it get better?"), one row per iteration (its ``iter_K/stats.json``), the
    judge-health warnings, then the run folder and the report. The selection rule is a column when it
    differs between iterations, else one line under the table, so that the table fits an 80-column
    terminal; the judge column says ``ok`` or ``WARN``, and each warning gets a line of its own. With a
    dev set, the selection's precision/recall on it; with exact answers, model K's exact match."""
    from .scoreboard import format_eval_table, read_evals

    evals = {r["model"]: r for r in read_evals(Path(run_dir))}
    rules = {s.get("selection") or "-" for s in summaries}
    per_row = len(rules) > 1
    rating = any(s.get("judge_kind", "rating") == "rating" for s in summaries)
    cols = [("iter", ">"), ("segments", ">"), ("cands", ">"), ("fails", ">"), ("curated", ">"), ("loss", ">"),
            ("scores 1/2/3/4/5" if rating else "judge mean", "<"), ("judge", "<")]
    if any(s.get("dev") for s in summaries):
        cols.append(("dev P/R", "<"))
    exact = any((evals.get(layout.iteration(s["iteration"]).dir) or {}).get("exact_match") is not None
                for s in summaries)
    if exact:
        cols.append(("exact match [95% CI]", ">"))
    if per_row:
        cols.append(("selection", "<"))
    rows = []
    for s in summaries:
        ev = evals.get(layout.iteration(s["iteration"]).dir) or {}
        cells = {"iter": str(s["iteration"]), "segments": _n(s.get("segments")), "cands": _n(s.get("candidates")),
                 "fails": _n(s.get("parse_failures")), "curated": _n(s.get("curated")),
                 "loss": f"{s['train_loss']:.3f}" if s.get("train_loss") is not None else "-",
                 "judge": health_cell(s.get("judge_health")), "dev P/R": dev_cell(s.get("dev")),
                 "exact match [95% CI]": exact_cell(ev), "selection": s.get("selection") or "-"}
        h = s.get("score_histogram") or {}
        value = "-" if s.get("value_mean") is None else f"{s['value_mean']:.3f}"
        cells[cols[6][0]] = ("/".join(str(h.get(str(i), 0)) for i in range(1, 6))
                             if s.get("judge_kind", "rating") == "rating" else value)
        rows.append([cells[name] for name, _ in cols])
    lines = [format_eval_table(list(evals.values())), "", "Per-iteration summary"] + _table(cols, rows)
    if summaries and not per_row:
        lines.append(f"selection: {rules.pop()}")
    lines += judges_table(summaries)
    warnings = warning_lines(summaries)
    if warnings:
        lines += [""] + warnings
    lines.append(f"\nRun folder: {run_dir}")
    if (Path(run_dir) / layout.REPORT).exists():
        lines.append(f"Report: {Path(run_dir) / layout.REPORT}")
    return "\n".join(lines)


def _table(cols: list[tuple[str, str]], rows: list[list[str]]) -> list[str]:
    widths = [max([len(name)] + [len(r[i]) for r in rows]) for i, (name, _) in enumerate(cols)]

    def line(cells: list[str]) -> str:
        return " ".join(c.rjust(w) if align == ">" else c.ljust(w)
                        for c, w, (_, align) in zip(cells, widths, cols)).rstrip()

    return [line([name for name, _ in cols])] + [line(r) for r in rows]


def exact_cell(ev: dict) -> str:
    """``0.810 [0.75, 0.86]``: a model's held-out exact match with its 95% interval."""
    em, ci = ev.get("exact_match"), ev.get("exact_match_ci") or [None, None]
    if em is None:
        return "-"
    return f"{em:.3f} [{_f(ci[0])}, {_f(ci[1])}]" if ci[0] is not None else f"{em:.3f}"


def health_cell(health: dict | None) -> str:
    """``ok``, or ``WARN`` when a judge-health figure is past its threshold (:mod:`humpback.judges.health`)."""
    if not health:
        return "-"
    return "WARN" if health.get("warnings") else "ok"


def dev_cell(dev: dict | None) -> str:
    if not dev:
        return "-"
    p, r = dev.get("precision"), dev.get("recall")
    return f"{_f(p)}/{_f(r)}"


def judges_table(summaries: list[dict]) -> list[str]:
    """Every iteration's judges side by side (shown when a run compares judges or has a dev set to
    measure them on): health, AUC on the dev set with its interval, agreement with the selecting judge."""
    records = [(s["iteration"], j) for s in summaries for j in s.get("judges") or []]
    if not any(j["role"] == "compared" or j.get("dev_auc") for _, j in records):
        return []
    cols = [("iter", ">"), ("judge", "<"), ("role", "<"), ("health", "<"), ("dev AUC [95% CI]", ">"),
            ("Spearman vs selecting", ">"), ("keeps the same", ">")]
    rows = []
    for k, j in records:
        auc, vs = j.get("dev_auc") or {}, j.get("versus") or {}
        rows.append([str(k), j["judge_kind"], j["role"], health_cell(j.get("health")),
                     f"{auc['auc']:.2f} [{_f(auc['low'])}, {_f(auc['high'])}]" if auc.get("auc") is not None else "-",
                     _f(vs.get("spearman")) if vs else "-",
                     f"{vs['kept_by_both']} of {vs['keep']}" if vs else "-"])
    return ["", "Judges (AUC: how well a judge ranks the dev set's good pairs above its bad ones; 0.5 is chance)"] \
        + _table(cols, rows)


def warning_lines(summaries: list[dict]) -> list[str]:
    """One ``WARNING`` line per judge-health warning of each iteration, the compared judges' included."""
    out = []
    for s in summaries:
        judges = s.get("judges") or [{"role": "selects", "judge_kind": None, "health": s.get("judge_health")}]
        for j in judges:
            who = "judge" if j["role"] == "selects" else f"compared {j['judge_kind']} judge"
            out += [f"WARNING: iteration {s['iteration']} {who}: {w}"
                    for w in (j.get("health") or {}).get("warnings") or []]
    return out


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _n(value) -> str:
    return "-" if value is None else str(value)

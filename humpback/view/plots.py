"""The report's plots, drawn with matplotlib (Agg) from a :class:`~humpback.view.read.RunView`: each a
PNG and the numbers it was drawn from (bar heights read back from the figure), so the report that
embeds it can be checked against the run.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass, field
from typing import Optional

from ..scoring import SCORES
from .read import RunView


@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    data: dict  # what was drawn (bar heights read back from the figure, or the plotted series)
    marks: dict = field(default_factory=dict)  # per panel (its title): how many marks of data it holds


def plots(view: RunView) -> list[Plot]:
    """Every plot of the report; a plot with nothing to draw yet is left out (the HTML says so)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    makers = (eval_plot, funnel_plot, score_histograms_plot, rates_plot, judges_plot, lengths_plot, losses_plot,
              principles_plot, dpo_plot)
    return [p for p in (make(view) for make in makers) if p is not None]


def eval_plot(view: RunView) -> Optional[Plot]:
    """What the run measured of every evaluated model, one panel per measure it has: exact match and win
    rate with their 95% intervals, held-out loss, mean answer length. A measure no model has is not drawn."""
    rows = view.evals
    if not rows:
        return None
    labels = [r["model"] for r in rows]
    xs = list(range(len(rows)))
    series = {"models": labels}
    panels = []  # (title, draw(ax))
    if _any(rows, "exact_match"):
        series.update(exact_match=[r.get("exact_match") for r in rows],
                      exact_match_ci=[r.get("exact_match_ci") for r in rows])
        panels.append(("exact match, 95% CI (higher is better)",
                       lambda ax: _with_interval(ax, xs, rows, "exact_match", "exact_match_ci", "exact match")))
    if _any(rows, "heldout_loss"):
        series["heldout_loss"] = [r.get("heldout_loss") for r in rows]
        panels.append(("held-out loss (lower is better)", lambda ax: _points(ax, xs, series["heldout_loss"])))
    if _any(rows, "win_rate"):
        series.update(win_rate=[r.get("win_rate") for r in rows], win_rate_ci=[r.get("win_rate_ci") for r in rows],
                      lc_win_rate=[r.get("lc_win_rate") for r in rows])

        def win(ax):
            _with_interval(ax, xs, rows, "win_rate", "win_rate_ci", "win rate, 95% CI")
            if _any(rows, "lc_win_rate"):
                _points(ax, xs, series["lc_win_rate"], marker="s", linestyle="--", label="length-controlled")
            ax.axhline(0.5, color="#8c8c8c", linewidth=0.8, gid=GUIDE)
            ax.legend(fontsize=8)

        panels.append(("win rate vs reference", win))
    if _any(rows, "answer_chars_mean"):
        series["answer_chars_mean"] = [r.get("answer_chars_mean") for r in rows]

        def chars(ax):
            drawn = [(x, v) for x, v in zip(xs, series["answer_chars_mean"]) if v is not None]
            ax.bar([x for x, _ in drawn], [v for _, v in drawn], color="#4c72b0")

        panels.append(("mean answer length (characters)", chars))
    if not panels:
        return None
    fig, axes = _figure(1, len(panels), width=min(3.6 * len(panels) + 0.6, 13))
    for ax, (title, draw) in zip(axes, panels):
        draw(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels)
    return _finish(fig, "eval", "Did it get better?", series)


def _any(rows: list[dict], key: str) -> bool:
    return any(r.get(key) is not None for r in rows)


def _points(ax, xs: list, values: list, **kw) -> None:
    drawn = [(x, v) for x, v in zip(xs, values) if v is not None]
    ax.plot([x for x, _ in drawn], [v for _, v in drawn], **{"marker": "o", **kw})


def _with_interval(ax, xs: list, rows: list[dict], key: str, ci_key: str, label: str) -> None:
    """Each model's ``key`` with error bars to its interval ``ci_key`` (a rate: the axis runs 0..1)."""
    drawn = [(x, r[key], r.get(ci_key) or [None, None]) for x, r in zip(xs, rows) if r.get(key) is not None]
    lo = [v - (ci[0] if ci[0] is not None else v) for _, v, ci in drawn]
    hi = [(ci[1] if ci[1] is not None else v) - v for _, v, ci in drawn]
    ax.errorbar([x for x, _, _ in drawn], [v for _, v, _ in drawn], yerr=[lo, hi], marker="o", capsize=4, label=label)
    ax.set_ylim(-0.02, 1.02)


def judges_plot(view: RunView) -> Optional[Plot]:
    """Each iteration's judges (the selecting one and each compared one): AUC on the labelled dev set with
    its 95% interval; drawn when some judge was measured on a dev set."""
    records = [(it.k, j) for it in view.iterations for j in it.judges
               if (j.get("dev_auc") or {}).get("auc") is not None]
    if not records:
        return None
    fig, ax = _figure(1, 1, width=6)
    ax = ax[0]
    kinds = list(dict.fromkeys(f"{j['judge_kind']} ({j['role']})" for _, j in records))
    data: dict = {}
    for n, kind in enumerate(kinds):
        pts = [(k, j["dev_auc"]) for k, j in records if f"{j['judge_kind']} ({j['role']})" == kind]
        offset = (n - (len(kinds) - 1) / 2) * 0.08  # side by side, not on top of each other
        lo = [a["auc"] - (a.get("low") if a.get("low") is not None else a["auc"]) for _, a in pts]
        hi = [(a.get("high") if a.get("high") is not None else a["auc"]) - a["auc"] for _, a in pts]
        ax.errorbar([k + offset for k, _ in pts], [a["auc"] for _, a in pts], yerr=[lo, hi], marker="o", capsize=4,
                    label=kind)
        data[kind] = [[k, a["auc"], a.get("low"), a.get("high")] for k, a in pts]
    ax.axhline(0.5, color="#8c8c8c", linewidth=0.8, gid=GUIDE)
    ks = sorted({k for k, _ in records})
    ax.set_xticks(ks)
    ax.set_xlim(min(ks) - 0.5, max(ks) + 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("iteration")
    ax.set_ylabel("dev-set AUC")
    ax.set_title("Judges on the dev set: AUC, 95% CI (0.5 is chance)")
    ax.legend(fontsize=8)
    return _finish(fig, "judges", "Judges", data)


def funnel_plot(view: RunView) -> Optional[Plot]:
    steps = [("documents", "funnel/documents"), ("sections", "funnel/sections"), ("segments", "funnel/segments"),
             ("seed tasks", "funnel/seed_tasks"), ("task prompts", "funnel/task_prompts"),
             ("tasks written", "funnel/tasks_written"), ("tasks kept", "funnel/tasks"),
             ("with instances", "funnel/tasks_with_instances"), ("instances", "funnel/instances"),
             ("candidates", "funnel/candidates")]
    first = view.iterations[0].figures if view.iterations else {}
    labels, values = [], []
    for label, key in steps:
        value = first.get(key) if first else None
        if value is None and key == "funnel/segments" and view.funnel:
            value = view.funnel.get("kept")
        if value is not None:
            labels.append(label)
            values.append(value)
    for it in view.iterations:
        if it.figures.get("curated") is not None:
            labels.append(f"curated A({it.k})")
            values.append(it.figures["curated"])
    if not values:
        return None
    fig, ax = _figure(1, 1, width=7)
    ax = ax[0]
    bars = ax.bar(labels, values, color=["#4c72b0"] * (len(values) - sum(lab.startswith("curated") for lab in labels))
                  + ["#55a868"] * sum(lab.startswith("curated") for lab in labels))
    ax.bar_label(bars, fontsize=8)
    ax.set_title("Filter funnel: documents to curated pairs")
    ax.set_ylabel("count")
    ax.tick_params(axis="x", labelrotation=20)
    return _finish(fig, "funnel", "Funnel", {"labels": labels, "values": _heights(ax)})


def score_histograms_plot(view: RunView) -> Optional[Plot]:
    its = [it for it in view.iterations if it.scores]
    if not its:
        return None
    fig, axes = _figure(1, len(its), width=3.2 * len(its) + 1, sharey=True)
    data = {}
    labels = [str(s) for s in SCORES] + ["fail"]
    for ax, it in zip(axes, its):
        # A replay that imported the run's scores ran no score stage here: the rows say what they are.
        kind = it.figures.get("judge_kind") or next((p["judge_kind"] for p in it.pairs if p.get("judge_kind")),
                                                    "rating")
        if kind != "rating":  # a likelihood or a verifier: its values
            data[str(it.k)] = _value_histogram(ax, it, kind)
            continue
        counts = [it.scores.count(s) for s in SCORES] + [it.scores.count(None)]
        threshold = it.figures.get("threshold")  # None: selected by rank (top_k / top_fraction)
        colors = ["#4c72b0" if threshold is None else "#55a868" if i + 1 >= threshold else "#c44e52"
                  for i in range(5)] + ["#8c8c8c"]
        ax.bar_label(ax.bar(labels, counts, color=colors), fontsize=8)
        ax.set_title(f"iteration {it.k}: {len(it.scores)} scored")
        ax.set_xlabel("score" if threshold is None else f"score (green: >= threshold {threshold:g})")
        data[str(it.k)] = dict(zip(labels, _heights(ax)))
    axes[0].set_ylabel("pairs")
    return _finish(fig, "score_histograms", "Score histograms", data)


def _value_histogram(ax, it, kind: str) -> dict:
    import numpy as np

    values = [v for v in it.values if v is not None]
    edges = np.histogram_bin_edges(values, bins=12) if values else np.arange(2)
    counts, _ = np.histogram(values, bins=edges)
    ax.stairs(counts, edges, fill=True, color="#4c72b0")
    fails = sum(v is None for v in it.values)
    ax.set_title(f"iteration {it.k}: {len(it.values)} scored" + (f", {fails} failed" if fails else ""))
    ax.set_xlabel(f"{kind} value")
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "failed": fails}


def rates_plot(view: RunView) -> Optional[Plot]:
    its = [it for it in view.iterations if it.figures.get("scored") is not None]
    if not its:
        return None
    fig, ax = _figure(1, 1, width=8)
    ax = ax[0]
    ks = [it.k for it in its]
    series = {"acceptance_rate": [it.figures.get("acceptance_rate") for it in its],
              "parse_failure_rate": [it.figures.get("parse_failure_rate") for it in its],
              "judge choice mass": [it.figures.get("judge_health/choice_mass_mean") for it in its],
              "most common score share": [it.figures.get("judge_health/top_score_share") for it in its],
              "dev precision": [it.figures.get("dev/precision") for it in its],
              "dev recall": [it.figures.get("dev/recall") for it in its]}
    series = {n: v for n, v in series.items() if any(x is not None for x in v) or "rate" in n}
    for name, values in series.items():
        xs = [k for k, v in zip(ks, values) if v is not None]
        ax.plot(xs, [v for v in values if v is not None], marker="o", label=name.replace("_", " "))
    ax.set_xticks(ks)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("iteration")
    ax.set_ylabel("fraction")
    ax.set_title("Rates per iteration")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the lines, never over them
    return _finish(fig, "rates", "Rates", {"iterations": ks, **series})


def lengths_plot(view: RunView) -> Optional[Plot]:
    import numpy as np

    series: dict[str, dict[str, list]] = {"instruction_chars": {}, "output_chars": {}}
    if view.candidates:
        series["instruction_chars"]["candidates"] = [len(c["instruction"]) for c in view.candidates]
        series["output_chars"]["candidates"] = [len(c["output"]) for c in view.candidates]
    for it in view.iterations:
        for name in series:
            if it.lengths.get(name):
                series[name][f"A({it.k})"] = it.lengths[name]
    if not any(series.values()):
        return None
    fig, axes = _figure(1, 2, width=10)
    data: dict = {}
    for ax, (name, groups) in zip(axes, series.items()):
        values = [v for g in groups.values() for v in g]
        edges = np.histogram_bin_edges(values, bins=20) if values else np.arange(2)
        data[name] = {"edges": [float(e) for e in edges]}
        for label, group in groups.items():
            counts, _ = np.histogram(group, bins=edges)
            ax.stairs(counts, edges, label=f"{label} (median {statistics.median(group):g})", linewidth=1.5)
            data[name][label] = [int(c) for c in counts]
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("characters")
        ax.set_ylabel("pairs")
        ax.legend(fontsize=8)
    return _finish(fig, "lengths", "Length distributions", data)


def losses_plot(view: RunView) -> Optional[Plot]:
    curves = {f"model {m}": pts for m, pts in view.seed_losses.items() if pts}
    curves.update({f"model {it.k}": it.losses for it in view.iterations if it.losses})
    if not curves:
        return None
    fig, ax = _figure(1, 1, width=7)
    ax = ax[0]
    for label, pts in curves.items():
        ax.plot([p["step"] for p in pts], [p["loss"] for p in pts], marker=".", label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    return _finish(fig, "losses", "Loss curves",
                   {label: [[p["step"], p["loss"]] for p in pts] for label, pts in curves.items()})


def dpo_plot(view: RunView) -> Optional[Plot]:
    """train.objective dpo: each iteration's DPO loss, reward margin and reward accuracy per logging step."""
    curves = {f"model {it.k}": it.dpo_curve for it in view.iterations if it.dpo_curve}
    if not curves:
        return None
    fig, axes = _figure(1, 3, width=12)
    data = {}
    for label, pts in curves.items():
        for ax, key in zip(axes, ("loss", "margin", "accuracy")):
            xy = [(p["step"], p[key]) for p in pts if p.get(key) is not None]
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker=".", label=label)
            data[f"{label}/{key}"] = [list(v) for v in xy]
    for ax, title in zip(axes, ("DPO loss", "reward margin (chosen - rejected)", "reward accuracy")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    return _finish(fig, "dpo", "DPO curves", data)


def principles_plot(view: RunView) -> Optional[Plot]:
    """Rubric judge: per principle, the rejected pairs that fail it (signed log-odds < 0), per iteration."""
    its = [it for it in view.iterations if it.principles and "rejected_failing" in it.principles[0]]
    if not its:
        return None
    fig, axes = _figure(1, len(its), width=4.5 * len(its) + 1, sharey=True)
    data = {}
    for ax, it in zip(axes, its):
        names = [p["principle"] for p in it.principles]
        bars = ax.barh(names, [p["rejected_failing"] for p in it.principles], color="#c44e52")
        ax.bar_label(bars, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"iteration {it.k}: rejected pairs failing each principle", fontsize=9)
        ax.set_xlabel("rejected pairs with signed log-odds < 0")
        data[str(it.k)] = dict(zip(names, [int(b.get_width()) for b in bars]))
    return _finish(fig, "principles", "Rubric principles", data)


def _figure(rows: int, cols: int, width: float, sharey: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 3.4), dpi=90, layout="constrained")
    axes = fig.subplots(rows, cols, sharey=sharey, squeeze=False)
    return fig, list(axes.flat)


def _heights(ax) -> list:
    from matplotlib.patches import Rectangle

    return [int(p.get_height()) if float(p.get_height()).is_integer() else float(p.get_height())
            for p in ax.patches if isinstance(p, Rectangle)]


def _finish(fig, name: str, title: str, data: dict) -> Plot:
    """The PNG, the plotted numbers, and per panel (its title) how many marks of data it holds, read back
    from the figure (:func:`marks`): a panel with 0 is an empty chart."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Plot(name, title, buf.getvalue(), data, {_panel(ax, i): marks(ax) for i, ax in enumerate(fig.axes)})


GUIDE = "guide"  # the gid of a reference line (chance, 0.5): not a mark of what was measured


def marks(ax) -> int:
    """How many marks of data ``ax`` holds: points of its lines, bars of non-zero size, histogram steps
    with a non-zero count, scatter points. Reference lines (gid ``GUIDE``) do not count."""
    import numpy as np
    from matplotlib.collections import PathCollection
    from matplotlib.patches import Rectangle, StepPatch

    n = sum(len(line.get_xdata()) for line in ax.lines if line.get_gid() != GUIDE)
    for p in ax.patches:
        if isinstance(p, StepPatch):
            n += int(np.count_nonzero(p.get_data().values))
        elif isinstance(p, Rectangle):
            n += int(p.get_height() != 0 and p.get_width() != 0)
        else:
            n += 1
    n += sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    return int(n)


def _panel(ax, i: int) -> str:
    return ax.get_title() or f"panel {i + 1}"


# --------------------------------------------------------------------------- the HTML file

"""The report's plots, drawn with matplotlib (Agg) from a :class:`~humpback.view.read.RunView`: each a
PNG and the numbers it was drawn from (bar heights read back from the figure), so the report that
embeds it can be checked against the run.
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from typing import Optional

from ..scoring import SCORES
from .read import RunView


@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    data: dict  # what was drawn (bar heights read back from the figure, or the plotted series)


def plots(view: RunView) -> list[Plot]:
    """Every plot of the report; a plot with nothing to draw yet is left out (the HTML says so)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    makers = (eval_plot, funnel_plot, score_histograms_plot, rates_plot, lengths_plot, losses_plot, principles_plot,
              dpo_plot)
    return [p for p in (make(view) for make in makers) if p is not None]


def eval_plot(view: RunView) -> Optional[Plot]:
    """Held-out loss, win rate (with its 95% interval) and mean answer length of every evaluated model."""
    rows = view.evals
    if not rows:
        return None
    labels = [r["model"] for r in rows]
    xs = list(range(len(rows)))
    fig, axes = _figure(1, 3, width=12)
    series = {"models": labels, "heldout_loss": [r.get("heldout_loss") for r in rows],
              "win_rate": [r.get("win_rate") for r in rows], "win_rate_ci": [r.get("win_rate_ci") for r in rows],
              "lc_win_rate": [r.get("lc_win_rate") for r in rows],
              "answer_chars_mean": [r.get("answer_chars_mean") for r in rows]}
    loss = [(x, v) for x, v in zip(xs, series["heldout_loss"]) if v is not None]
    axes[0].plot([x for x, _ in loss], [v for _, v in loss], marker="o")
    axes[0].set_title("held-out loss (lower is better)")
    win = [(x, r["win_rate"], r.get("win_rate_ci") or [None, None]) for x, r in zip(xs, rows) if r.get("win_rate") is not None]
    if win:
        lo = [w - (ci[0] if ci[0] is not None else w) for _, w, ci in win]
        hi = [(ci[1] if ci[1] is not None else w) - w for _, w, ci in win]
        axes[1].errorbar([x for x, _, _ in win], [w for _, w, _ in win], yerr=[lo, hi], marker="o", capsize=4,
                         label="win rate, 95% CI")
        lc = [(x, r["lc_win_rate"]) for x, r in zip(xs, rows) if r.get("lc_win_rate") is not None]
        axes[1].plot([x for x, _ in lc], [v for _, v in lc], marker="s", linestyle="--", label="length-controlled")
        axes[1].axhline(0.5, color="#8c8c8c", linewidth=0.8)
        axes[1].legend(fontsize=8)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("win rate vs reference")
    chars = [(x, v) for x, v in zip(xs, series["answer_chars_mean"]) if v is not None]
    axes[2].bar([x for x, _ in chars], [v for _, v in chars], color="#4c72b0")
    axes[2].set_title("mean answer length (characters)")
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels)
    return _finish(fig, "eval", "Did it get better?", series)


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
        if it.figures.get("judge_kind", "rating") != "rating":  # a likelihood or a verifier: its values
            data[str(it.k)] = _value_histogram(ax, it)
            continue
        counts = [it.figures[f"score_count/{s}"] for s in SCORES] + [it.figures["score_count/none"]]
        threshold = it.figures.get("threshold")  # None: selected by rank (top_k / top_fraction)
        colors = ["#4c72b0" if threshold is None else "#55a868" if i + 1 >= threshold else "#c44e52"
                  for i in range(5)] + ["#8c8c8c"]
        ax.bar_label(ax.bar(labels, counts, color=colors), fontsize=8)
        ax.set_title(f"iteration {it.k}: {it.figures['scored']} scored")
        ax.set_xlabel("score" if threshold is None else f"score (green: >= threshold {threshold:g})")
        data[str(it.k)] = dict(zip(labels, _heights(ax)))
    axes[0].set_ylabel("pairs")
    return _finish(fig, "score_histograms", "Score histograms", data)


def _value_histogram(ax, it) -> dict:
    import numpy as np

    values = [v for v in it.values if v is not None]
    edges = np.histogram_bin_edges(values, bins=12) if values else np.arange(2)
    counts, _ = np.histogram(values, bins=edges)
    ax.stairs(counts, edges, fill=True, color="#4c72b0")
    fails = sum(v is None for v in it.values)
    ax.set_title(f"iteration {it.k}: {it.figures['scored']} scored" + (f", {fails} failed" if fails else ""))
    ax.set_xlabel(f"{it.figures.get('judge_kind')} value")
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "failed": fails}


def rates_plot(view: RunView) -> Optional[Plot]:
    its = [it for it in view.iterations if it.figures.get("scored") is not None]
    if not its:
        return None
    fig, ax = _figure(1, 1, width=6)
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
    ax.set_title("Acceptance, parse failures, judge health, dev precision/recall")
    ax.legend()
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
    return _finish(fig, "losses", "Loss curves", {label: [[p["step"], p["loss"]] for p in pts] for label, pts in curves.items()})


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Plot(name, title, buf.getvalue(), data)


# --------------------------------------------------------------------------- the HTML file

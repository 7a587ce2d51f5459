"""What the dataset card and the HTML report say about the review: how many pairs were reviewed,
accepted, rejected and edited, by whom, what an export or a curated set did with the decisions, and the
judge-reviewer agreement of every iteration with its 95% Wilson interval (:mod:`.quality`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

from .. import layout
from .decisions import counts, decisions_sha256, disagreements, effective, read_decisions
from .quality import iteration_quality


def _num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def agreement_text(q: dict) -> str:
    """``0.740 (95% Wilson interval 0.601-0.843) over 50 reviewed pairs``."""
    if not q.get("pairs"):
        return "no reviewed pair"
    lo, hi = q["agreement_ci"]
    return f"{_num(q['agreement'])} (95% Wilson interval {_num(lo)}-{_num(hi)}) over {q['pairs']} reviewed pairs"


def review_counts(run_dir: Path, decisions: Optional[list[dict]] = None) -> Optional[dict]:
    """The run's review in numbers (None: nobody reviewed): counts, reviewers, disagreements, the file's hash."""
    decisions = read_decisions(run_dir) if decisions is None else decisions
    if not decisions:
        return None
    return {**counts(effective(decisions)), "disagreements": disagreements(decisions),
            "decisions_sha256": decisions_sha256(run_dir)}


def card_section(run_dir: Path, iteration: int, applied: Optional[dict], honoured: bool) -> str:
    """The dataset card's "Human review" section (empty when nobody reviewed the run)."""
    decisions = read_decisions(run_dir)
    c = review_counts(run_dir, decisions)
    if c is None:
        return ""
    lines = ["## Human review", "",
             f"{c['reviewed']} pairs of this run were read in `humpback review` by {', '.join(c['reviewers'])}: "
             f"{c['accepted']} accepted, {c['rejected']} rejected, {c['edited']} edited"
             + (f" ({c['disagreements']} pairs on which reviewers disagree; the latest decision counts)"
                if c["disagreements"] else "") + ".",
             f"Decisions: `{layout.REVIEW_DECISIONS}`, sha256 `{c['decisions_sha256']}`.", ""]
    selected = _selected_with(run_dir, iteration)
    if selected is not None:  # curate.review (a replay): A(K) itself was made with the decisions
        lines += [f"Iteration {iteration}'s curated set was selected with them (`curate.review`, decisions sha256 "
                  f"`{selected['decisions_sha256'][:16]}`): {_changes(selected, 'dropped')}.", ""]
    if applied is not None and selected is not None and not applied["rejected_dropped"] and not applied["forced_in"]:
        lines += ["This export honours them: the curated set already does.", ""]
    elif applied is not None:
        lines += [f"This export honours them: {_changes(applied, 'left out')}"
                  + (f"; {applied['stale']} stale decisions (pairs generated again since) ignored" if applied["stale"]
                     else "") + ".", ""]
    elif not honoured:
        lines += ["This export does not honour them (`--no-review`): the judge's selection as it was.", ""]
    quality = next((q for q in iteration_quality(run_dir, decisions) if q["iteration"] == iteration), None)
    if quality is not None and quality["pairs"]:
        lines += [f"Judge-reviewer agreement (iteration {iteration}'s selection, kept or dropped, against the "
                  f"reviewers' verdicts, an edit counting as kept): {agreement_text(quality)}. As a labelled dev set: "
                  f"precision {_num(quality['precision'])}, recall {_num(quality['recall'])}, "
                  f"F1 {_num(quality['f1'])}.",
                  ""]
    return "\n".join(lines)


def _changes(stats: dict, dropped: str) -> str:
    forced = (f"{stats['forced_in']} accepted pairs the judge had dropped forced in" if stats["force_accepted"]
              else "accepted pairs the judge dropped were not forced in")
    return (f"{stats['rejected_dropped']} rejected pairs {dropped}, "
            f"{stats['edited_applied']} edited instructions used, {forced}")


def _selected_with(run_dir: Path, iteration: int) -> Optional[dict]:
    """What the decisions changed when iteration K's select stage applied them (``curate.review``); None: it
    did not."""
    import json

    manifest = Path(run_dir) / layout.MANIFEST
    stages = json.loads(manifest.read_text()).get("stages", {}) if manifest.exists() else {}
    review = (stages.get(layout.iteration(iteration).stage("select"), {}).get("stats") or {}).get("review")
    return review if review and review.get("decisions_sha256") else None


def report_section(run_dir: Path) -> str:
    """The HTML report's "Human review" section: counts, and every iteration's selection against the
    reviewers (agreement with its interval, precision, recall, F1). Empty when nobody reviewed the run;
    a corrupted decisions file is shown as such, never a failed report."""
    from ..errors import StoreError

    e = html.escape
    try:
        decisions = read_decisions(run_dir)
    except StoreError as err:
        return f"<h2>Human review</h2><p class='missing'>{e(str(err))}</p>"
    c = review_counts(run_dir, decisions)
    if c is None:
        return ""
    rows = "".join(
        f"<tr><td>{q['iteration']}</td><td>{e(str(q['judge'] or '-'))}</td><td>{q['pairs']}</td>"
        f"<td>{q['agreeing']}</td>"
        f"<td data-key='agreement'>{_num(q['agreement'])}</td>"
        f"<td>{_num(q['agreement_ci'][0])}-{_num(q['agreement_ci'][1])}</td>"
        f"<td>{_num(q['precision'])}</td><td>{_num(q['recall'])}</td><td>{_num(q['f1'])}</td></tr>"
        for q in iteration_quality(run_dir, decisions))
    disagree = f"; {c['disagreements']} pairs on which reviewers disagree" if c["disagreements"] else ""
    return ("<h2>Human review</h2>"
            f"<p id='review-counts' data-reviewed='{c['reviewed']}' data-accepted='{c['accepted']}' "
            f"data-rejected='{c['rejected']}' data-edited='{c['edited']}'>{c['reviewed']} pairs reviewed by "
            f"{e(', '.join(c['reviewers']))}: {c['accepted']} accepted, {c['rejected']} rejected, {c['edited']} edited"
            f"{disagree} (<code>{e(layout.REVIEW_DECISIONS)}</code>, sha256 {e(c['decisions_sha256'][:16])}). "
            "Each iteration's selection (its judge's rule on its saved scores) against the reviewers' verdicts, an "
            "edit counting as kept:</p>"
            "<table class='review'><tr><th>iteration</th><th>judge</th><th>reviewed pairs</th><th>agreeing</th>"
            "<th>agreement</th><th>95% Wilson interval</th><th>precision</th><th>recall</th><th>F1</th></tr>"
            f"{rows}</table>")

"""One reviewer's session on one sample: what the page shows and what a verdict changes. No web code.

The decisions file is the only state: every call reads it again (so a second reviewer's verdicts and a
restarted server show at once), and every verdict is written to it before the call returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from .decisions import decision, effective, read_decisions, record
from .quality import review_quality
from .sample import ReviewSample, score_name


@dataclass
class ReviewSession:
    sample: ReviewSample
    reviewer: str

    def __post_init__(self):
        self.by_id = {item["id"]: item for item in self.sample.items}
        read_decisions(self.sample.run_dir)  # a corrupted file stops the server before it starts

    def state(self) -> dict:
        """Everything the page needs: the sample, each item's decision, progress and agreement."""
        s = self.sample
        return {"run": str(s.run_dir), "iteration": s.iteration, "reviewer": self.reviewer, "judge": s.judge,
                "description": s.describe(), "score_name": score_name(s.rule), "cutoff": s.cutoff,
                "items": s.items, **self.progress()}

    def progress(self) -> dict:
        """Decisions about this sample's pairs (the latest per pair, any reviewer's), how many are done,
        and the agreement so far between the reviewer and the judge's selection."""
        decided = {cid: d for cid, d in effective(read_decisions(self.sample.run_dir)).items()
                   if cid in self.by_id and d["pair_sha256"] == self.by_id[cid]["pair_sha256"]}
        judged = {cid: d for cid, d in decided.items() if self.by_id[cid]["kept"] is not None}
        selected = {cid for cid in judged if self.by_id[cid]["kept"]}
        quality = review_quality(judged, selected)
        return {"decisions": {cid: _shown(d) for cid, d in decided.items()}, "done": len(decided),
                "total": len(self.sample.items), "agreement": {k: quality[k] for k in (
                    "pairs", "agreeing", "agreement", "agreement_ci", "precision", "recall", "f1")}}

    def decide(self, candidate_id: str, verdict: str, instruction: str | None = None) -> dict:
        item = self._item(candidate_id)
        row = decision(candidate_id, verdict, self.reviewer, self.sample.iteration, item["pair_sha256"],
                       instruction=instruction)
        record(self.sample.run_dir, [row])
        return self.progress()

    def undo(self, candidate_id: str) -> dict:
        self._item(candidate_id)
        record(self.sample.run_dir, [], remove=[(candidate_id, self.reviewer)])
        return self.progress()

    def _item(self, candidate_id: str) -> dict:
        if candidate_id not in self.by_id:
            raise KeyError(f"pair {candidate_id!r} is not in this sample")
        return self.by_id[candidate_id]


def _shown(d: dict) -> dict:
    return {"verdict": d["verdict"], "instruction": d["instruction"], "reviewer": d["reviewer"],
            "time": d["time"].isoformat(timespec="seconds")}

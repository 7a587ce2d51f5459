"""Judges: one module per ``curate.judge_kind``, rows in, score rows out (``rubric``: the weave rubric)."""

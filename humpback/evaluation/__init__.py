"""Evaluation of every model of a run, as pure pieces the eval stages (``humpback.stages.evaluate``) use:

- ``winrate``: pairwise outcomes -> win rate, bootstrap interval, length-controlled win rate,
  position consistency;
- ``exact``: exact match of an answer against a reference answer, with a Wilson interval;
- ``pairwise``: the pairwise judge's prompt rendering and verdict parsing;
- ``prompt_set``: the held-out split of the seed and the eval prompt set (files, ``datasets`` ids);
- ``heldout``: the held-out loss, tokenised exactly as training tokenises;
- ``alpaca_eval``: AlpacaEval ``model_outputs.json`` files, written and read;
- ``harness``: lm-evaluation-harness on the base model plus an adapter.
"""

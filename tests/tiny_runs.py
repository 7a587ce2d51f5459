"""The named tiny runs that test modules share (conftest's ``tiny_run(name)`` fixture): the tiny recipe with
these overrides. A module that reruns one in a subprocess reads its overrides from here."""

TINY_RUNS = {
    # Threshold selection on the expected score, which test_run changes (a random tiny judge gives every pair
    # the same argmax score, but expected scores differ from pair to pair).
    "expected": ["curate.select=threshold", "curate.select_on=expected", "curate.threshold=1",
                 "corpus.max_segments=12", "train.max_steps=2", "train.logging_steps=1", "train.max_length=256",
                 "augment.max_new_tokens=12", "generation.batch_size=8", "tracking.progress=false"],
    # 12 segments in shards of 4 (three shards per generation stage; the 8 held-out prompts in two eval shards),
    # threshold selection on the argmax score (replay changes it), two iterations, every model evaluated:
    # test_resume (kills, workers, replay, export) and test_evaluation (the eval stages, `humpback eval`).
    "sharded": ["curate.select=threshold", "curate.select_on=argmax", "curate.threshold=3",
                "corpus.max_segments=12", "shard_size=4", "train.max_steps=2", "train.logging_steps=1",
                "train.max_length=256", "augment.max_new_tokens=12", "eval.max_new_tokens=12",
                "generation.batch_size=4", "tracking.progress=false"],
}

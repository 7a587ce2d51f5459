"""Human review of generated pairs: ``humpback review RUN_DIR`` and what its decisions change.

- ``decisions``: the decisions table ``RUN_DIR/review/decisions.parquet``, written atomically under a lock;
- ``sample``: which of an iteration's pairs a reviewer reads, in which order;
- ``session``, ``app``, ``serve``: the review page (Starlette + uvicorn, plain HTML and JavaScript);
- ``quality``: reviewed pairs as a labelled dev set, the judge-reviewer agreement of every iteration;
- ``apply``: decisions applied to a curated set (``curate.review``, ``replay``, ``export``);
- ``summary``: what the dataset card and the report say about the review;
- ``argilla``: the same sample pushed to an Argilla server and its responses pulled back (optional).

Importing this package imports no web or Argilla code; those load inside the functions that need them.
"""

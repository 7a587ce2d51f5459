"""The ``humpback review`` command, from its parsed arguments: serve the page, or push the same sample
to Argilla, or pull Argilla's responses into the decisions table."""

from __future__ import annotations

from pathlib import Path

from ..layout import REVIEW_DECISIONS
from .sample import load_sample, parse_part


def review_command(args) -> int:
    from .serve import default_reviewer, serve
    from .session import ReviewSession

    run_dir = Path(args.run_dir)
    sample = load_sample(run_dir, args.iteration, n=args.sample, order=args.order, seed=args.seed,
                         part=parse_part(args.part))
    if args.argilla_push or args.argilla_pull:
        from .argilla_sync import pull, push

        if args.argilla_push:
            n = push(sample, args.argilla_push, workspace=args.argilla_workspace)
            print(f"Pushed {n} pairs of {sample.describe()} to the Argilla dataset {args.argilla_push}")
        if args.argilla_pull:
            got = pull(sample, args.argilla_pull, workspace=args.argilla_workspace)
            print(f"Pulled {got['recorded']} decisions from the Argilla dataset {args.argilla_pull} into "
                  f"{run_dir / REVIEW_DECISIONS} ({got['skipped']} responses skipped: "
                  f"{got['skipped_reasons'] or 'none'})")
        return 0
    serve(ReviewSession(sample, args.reviewer or default_reviewer()), port=args.port,
          open_browser=False if args.no_browser else None)
    return 0

"""`humpback` that stops after the first shard one of the named stages finishes, so that a crash test can
SIGKILL the process between shards: ``python tests/paused_humpback.py STAGE[,STAGE...] run RECIPE ...``
(``*``: any stage). The process then holds (it does nothing until it is killed, at most
:data:`HOLD_LIMIT_S`), so the kill lands between shards however late a loaded machine lets the test
notice the shard's marker; the other stages (such as the evaluation stages that run before
augmentation) go at full speed."""

import os
import sys
import time

from humpback import cli
from humpback.store import shards

HOLD_LIMIT_S = 900  # a test that failed before its kill must not leave this process behind for ever


def hold_after_shard(stages: str) -> None:
    """Install the hook: after a shard of one of ``stages`` (comma-separated stage names, or ``*``),
    hold until killed."""
    only = None if stages == "*" else set(stages.split(","))

    def hold(stage: str, shard: int) -> None:
        if only is not None and stage not in only:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(HOLD_LIMIT_S)
        print(f"paused_humpback: held {HOLD_LIMIT_S} s after {stage} shard {shard} and was not killed",
              file=sys.stderr)
        os._exit(3)

    shards.after_shard.append(hold)


if __name__ == "__main__":
    hold_after_shard(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))

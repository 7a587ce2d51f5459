"""`humpback` with a pause after every shard of the sharded stages, so a crash test can SIGKILL the
process between shards: ``python tests/paused_humpback.py SECONDS[:STAGE,STAGE...] run RECIPE ...``;
with stage names, only those stages pause (the others, such as the evaluation stages that run before
augmentation, go at full speed)."""

import sys
import time

from humpback import cli
from humpback.store import shards

if __name__ == "__main__":
    seconds, _, names = sys.argv[1].partition(":")
    only = set(names.split(",")) if names else None
    shards.after_shard.append(lambda stage, shard: time.sleep(float(seconds)) if only is None or stage in only else None)
    sys.exit(cli.main(sys.argv[2:]))

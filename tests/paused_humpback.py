"""`humpback` with a pause after every shard of the sharded stages, so a crash test can SIGKILL the
process between shards: ``python tests/paused_humpback.py SECONDS run RECIPE ...``."""

import sys
import time

from humpback import cli
from humpback.store import shards

if __name__ == "__main__":
    pause = float(sys.argv[1])
    shards.after_shard.append(lambda stage, shard: time.sleep(pause))
    sys.exit(cli.main(sys.argv[2:]))

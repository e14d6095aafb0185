"""A stand-in torchrun worker for the orphan tests: records its pid, then 'trains' (sleeps).

Run by torchrun as ``-m netassets.core.torchrun worker netassets_tests.ops.sleepy_trainer DIR``.
It opens Dagster pipes through ``worker_session`` like the real workers.
"""

import os
import sys
import time
from pathlib import Path

from netassets.core.torchrun import worker_session

if __name__ == "__main__":
    folder = Path(sys.argv[1])
    with worker_session() as session:
        (folder / f"worker-{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
        session.log("training")
        time.sleep(120)

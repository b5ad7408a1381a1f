"""Runs ``cacl pretrain`` in one torchrun rank and records what the tests compare across ranks.

The queues are recorded after every enqueue (they must be equal on every rank), then saved as
``rank<RANK>.pt`` in the folder given first on the command line; the rest is ``cacl``'s argv.
"""

import os
import sys
from pathlib import Path

import torch

from cacl_cli import cli
from cacl_cli.model import cacl

seen: dict = {}
original_enqueue = cacl.CACL._enqueue


def recording_enqueue(self, keys):
    original_enqueue(self, keys)
    seen["queues"] = {head: q.features.clone() for head, q in self.queues.items()}
    seen["enqueues"] = seen.get("enqueues", 0) + 1


cacl.CACL._enqueue = recording_enqueue

if __name__ == "__main__":
    record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    sys.argv = ["cacl", *argv]
    try:
        cli.main()
    except SystemExit as exit:
        code = exit.code
    else:
        code = 0
    torch.save(seen, record_dir / f"rank{os.environ['RANK']}.pt")
    sys.exit(code)

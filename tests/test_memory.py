"""memory.py: glibc's malloc keeps the large blocks a training step frees, for the next step."""

import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB tensor 16 times, as a training loop does with its large tensors,
# and prints the minor page faults of the last 4 allocations: memory the process touches for the
# first time costs one fault per page. (glibc settles on reusing torch's aligned blocks only
# after a few rounds.)
FAULTS = """
import resource, torch
from cacl_cli.memory import reuse_freed_memory
applied = reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(12):
    torch.ones(2**24)
before = faults()
for _ in range(4):
    torch.ones(2**24)
print(applied, faults() - before)
"""


def page_faults(env: dict) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True, env=env
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_freed_large_tensors_are_reused_without_new_page_faults(monkeypatch):
    pages = 4 * 2**26 // 4096  # four fresh 64 MiB tensors
    monkeypatch.delenv("CACL_SYSTEM_MALLOC", raising=False)
    applied, tuned = page_faults(dict(os.environ))
    opted_out, system = page_faults(dict(os.environ, CACL_SYSTEM_MALLOC="1"))
    assert (applied, opted_out) == ("True", "False")
    assert system > pages // 2  # the system default maps and faults them in again
    assert tuned < pages // 20  # kept in the heap: reused with no new faults

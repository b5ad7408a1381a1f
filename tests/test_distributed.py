"""`cacl pretrain` under torchrun on CPU (gloo): two ranks act as one process with 2 BN groups."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, run_cacl, sets

pytestmark = [
    pytest.mark.slow,  # two-rank torchrun runs
    pytest.mark.xdist_group("test_distributed"),  # one worker builds the module's fixtures once
]

WORKER = Path(__file__).parent / "rank_worker.py"
# Pixel shuffle and batch shuffle draw random permutations that differ between the two layouts;
# everything else (data, queue picks, initial weights) is the same by construction.
SAME_WORK = ["model.pixel_shuffle=off", "moco.batch_shuffle=false", "schedule.steps=2"]
SAME_WORK += ["run.checkpoint_every=1", "run.keep_checkpoints=5", "data.num_workers=0"]
SAME_WORK += ["run.amp=off"]  # float32: bf16 would round two placements of a batch apart


def torchrun(record_dir: Path, *cacl_args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    command += ["2", str(WORKER), str(record_dir), *map(str, cacl_args)]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    path = run / "checkpoints" / f"step-{step:07d}.pt"
    state = torch.load(path, weights_only=True)["model"]
    # BN running statistics are per rank (rank 0's are saved); everything else must agree.
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    run = folder / "run"
    done = torchrun(
        folder,
        "pretrain",
        "--device",
        "cpu",
        "--out",
        run,
        *sets(*SAME_WORK, "data.batch_size=4", "moco.shuffle_bn_groups=1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torchrun: 2 process(es), backend gloo, 8 images per step" in done.stdout
    return folder, run


def test_both_ranks_ran_and_their_queues_agree(two_ranks):
    folder, _ = two_ranks
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["enqueues"] for r in ranks] == [2, 2]  # two steps on each rank
    for head, queue in ranks[0]["queues"].items():
        torch.testing.assert_close(queue, ranks[1]["queues"][head], rtol=0, atol=0)


def test_two_ranks_match_one_process_with_two_bn_groups(two_ranks, tmp_path):
    _, run = two_ranks
    one = tmp_path / "one"
    overrides = [*SAME_WORK, "data.batch_size=8", "moco.shuffle_bn_groups=2", "model.bn_groups=2"]
    done = run_cacl("pretrain", "--device", "cpu", "--out", one, *sets(*overrides))
    assert done.returncode == 0, done.stderr[-3000:]
    for step in (1, 2):
        got, expected = weights(run, step), weights(one, step)
        assert got.keys() == expected.keys()
        queues = [k for k in got if k.startswith("queues.")]
        assert queues and any(k.startswith("online.") for k in got)
        for key in got:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)


def test_rank_zero_checkpoint_resumes_in_one_process(two_ranks, tmp_path):
    _, run = two_ranks
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "checkpoints").mkdir()
    (resumed / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    first = run / "checkpoints" / "step-0000001.pt"
    (resumed / "checkpoints" / first.name).write_bytes(first.read_bytes())
    done = run_cacl("pretrain", "--device", "cpu", "--out", resumed, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from step-0000001.pt (step 1)" in done.stdout
    assert (resumed / "checkpoints" / "step-0000002.pt").is_file()

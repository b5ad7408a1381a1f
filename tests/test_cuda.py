"""CUDA paths: mixed precision, NCCL under torchrun, batched augmentation, the chunked cycle.

Marked ``cuda`` and skipped without a GPU; bench/gpu_check.sh runs them on a CUDA machine.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, run_cacl, sets

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_pretrain_steps_on_the_gpu_with_each_precision(tmp_path, amp):
    run = tmp_path / "run"
    done = run_cacl(
        "pretrain", "--device", "cuda", "--out", run, *sets("schedule.steps=3", f"run.amp={amp}")
    )
    assert done.returncode == 0, done.stderr
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(v == v and abs(v) != float("inf") for k, v in last.items() if k.endswith("loss"))
    assert last["gpu_peak_gib"] > 0
    state = torch.load(run / "checkpoints" / "step-0000003.pt", weights_only=True)
    assert bool(state["scaler"]) == (amp == "fp16")  # only fp16 needs a loss scaler


def test_torchrun_joins_an_nccl_group_and_trains_under_ddp(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "1", "-m", "cacl_cli", "pretrain", "--device", "cuda"]
    command += ["--out", str(run), *sets("schedule.steps=2")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "checkpoints" / "step-0000002.pt").is_file()
    assert "torchrun: 1 process(es), backend nccl" in done.stdout


def test_batched_augmentation_on_the_gpu_matches_the_cpu():
    from cacl_cli.config import resolve
    from cacl_cli.training import build_batches

    batches = build_batches(resolve("tiny-world", ["data.batch_size=16"]))
    raw = batches[0]
    on_gpu = batches.finish(raw, torch.device("cuda"))
    on_cpu = batches.finish(raw, torch.device("cpu"))
    for gpu, cpu in zip(on_gpu, on_cpu):
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_the_loader_pins_its_batches_for_the_gpu():
    from cacl_cli.config import resolve
    from cacl_cli.data.batches import LoadedBatches
    from cacl_cli.training import build_batches

    batches = build_batches(resolve("tiny-world", ["data.batch_size=4"]))
    for pin in (True, False):
        with LoadedBatches(batches, 0, 1, num_workers=1, pin=pin) as loader:
            batch = next(loader)
        assert all(part.is_pinned() == pin for part in batch)


def test_chunked_cycle_on_the_gpu_equals_the_whole_and_saves_memory():
    from cacl_cli.model.losses import cycle_loss

    torch.manual_seed(0)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, device="cuda"), dim=1)  # noqa: E731
    c, c_plus, queue = unit(8, 128, 28, 28), unit(8, 128, 28, 28), unit(16384, 128)
    results = []
    for rows in (0, 64):
        x = c.clone().requires_grad_()
        torch.cuda.reset_peak_memory_stats()
        loss = cycle_loss(x, c_plus, queue, 0.07, chunk_rows=rows)
        loss.backward()
        results.append((loss.item(), x.grad, torch.cuda.max_memory_allocated()))
    (whole, g_whole, m_whole), (chunked, g_chunked, m_chunked) = results
    assert chunked == pytest.approx(whole, rel=1e-5)
    torch.testing.assert_close(g_chunked, g_whole, rtol=1e-4, atol=1e-6)
    assert m_chunked < 0.5 * m_whole

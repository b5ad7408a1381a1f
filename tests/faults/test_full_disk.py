"""A real full disk (a small tmpfs), not a faked OSError: one line, exit 1, nothing lost."""

from cacl_cli import training
from cacl_cli.checkpoint import list_checkpoints, load_checkpoint
from tests.conftest import fill_disk, run_cacl, sets


def test_a_checkpoint_on_a_full_disk_exits_1_with_the_last_one_intact(small_tmpfs, monkeypatch):
    run = small_tmpfs / "run"
    real_save = training.save_checkpoint

    def save_then_fill(*args, **kwargs):
        path = real_save(*args, **kwargs)
        fill_disk(small_tmpfs)  # the next checkpoint will not fit; metrics lines still do
        return path

    monkeypatch.setattr(training, "save_checkpoint", save_then_fill)
    done = run_cacl("pretrain", "--out", run, *sets("schedule.steps=6", "run.checkpoint_every=2"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "step 4: could not write a checkpoint" in lines[0]
    assert "step-0000002.pt, is intact" in lines[0] and "--resume" in lines[0]
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002.pt"]
    assert load_checkpoint(run / "checkpoints" / "step-0000002.pt")["step"] == 2
    assert not list((run / "checkpoints").glob(".*.tmp"))
    (small_tmpfs / "filler").unlink()  # space freed: the same command resumes and finishes
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    resumed = run_cacl("pretrain", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "step-0000006.pt")["step"] == 6

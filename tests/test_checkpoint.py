"""Saving and restoring runs: atomic files, damaged checkpoints, untrusted pickles."""

import os
import pickle

import pytest
import torch

from cacl_cli.checkpoint import (
    find_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from cacl_cli.errors import CaclError


def state(step):
    """The fields a resume reads, in their types."""
    return {
        "step": step,
        "model": {"w": torch.full((3,), float(step))},
        "optimizer": {},
        "rng": {"torch": torch.get_rng_state()},
        "config": {},
    }


@pytest.mark.parametrize(
    "damage",
    [
        {"step": "abc"},
        {"step": -1},
        {"model": [1, 2]},
        {"model": {"w": "x"}},
        {"rng": None},
        {"rng": {}},
        {"optimizer": 3},
        {"config": "tiny-world"},
    ],
)
def test_a_checkpoint_with_a_field_of_the_wrong_type_is_skipped_for_the_previous(tmp_path, damage):
    save_checkpoint(tmp_path, 10, state(10))
    save_checkpoint(tmp_path, 20, state(20) | damage)
    warnings = []
    path, loaded = latest_checkpoint(tmp_path, warn=warnings.append)
    assert loaded["step"] == 10 and path.name == "step-0000010.pt"
    field = next(iter(damage))
    assert f"step-0000020.pt: field '{field}' is missing or of the wrong type" in warnings[0]


def test_save_keeps_the_newest_and_moves_the_pointer(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, state(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000020.pt", "step-0000030.pt"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-0000030.pt"
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    path, loaded = latest_checkpoint(tmp_path)
    assert loaded["step"] == 30 and find_checkpoint(tmp_path) == path


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, 10, state(10))
    newest = save_checkpoint(tmp_path, 20, state(20))
    newest.write_bytes(newest.read_bytes()[:40])
    warnings = []
    path, loaded = latest_checkpoint(tmp_path, warn=warnings.append)
    assert loaded["step"] == 10 and "step-0000020.pt" in warnings[0]


def test_resume_with_every_checkpoint_damaged_stops_instead_of_starting_over(tmp_path):
    for step in (10, 20):
        path = save_checkpoint(tmp_path, step, state(step))
        path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CaclError, match="none of its 2 checkpoint\\(s\\) loads"):
        latest_checkpoint(tmp_path, warn=lambda _: None)
    assert len(list_checkpoints(tmp_path)) == 2  # nothing removed or overwritten
    assert latest_checkpoint(tmp_path / "fresh") is None  # no checkpoint yet: a new run starts


def test_not_a_checkpoint_is_a_one_line_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(CaclError, match="junk.pt is not a readable cacl checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CaclError, match="no 'model' entry"):
        load_checkpoint(other)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(marker)}, evil, pickle_module=pickle)
    with pytest.raises(CaclError, match="not a readable cacl checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_find_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(CaclError, match="holds no checkpoints"):
        find_checkpoint(tmp_path)
    with pytest.raises(CaclError, match="does not exist"):
        find_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("given", ["x", 1.5, None, True, -3])
def test_a_checkpoint_whose_format_is_no_number_is_damaged_and_skipped(tmp_path, given):
    save_checkpoint(tmp_path, 10, state(10))
    save_checkpoint(tmp_path, 20, state(20) | {"format": given})
    warnings = []
    path, loaded = latest_checkpoint(tmp_path, warn=warnings.append)
    assert loaded["step"] == 10 and "field 'format'" in warnings[0]
    with pytest.raises(CaclError, match="not a checkpoint format number"):
        load_checkpoint(tmp_path / "checkpoints" / "step-0000020.pt")


def test_a_checkpoint_nested_past_the_unpicklers_depth_is_one_line(tmp_path):
    import sys

    nested: list = []
    for _ in range(sys.getrecursionlimit() * 2):
        nested = [nested]
    path = tmp_path / "deep.pt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit * 10)  # to write it; reading it back is the test
    try:
        torch.save({"model": nested}, path)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(CaclError, match="deep.pt(: field 'model'| is nested too deep)"):
        load_checkpoint(path)

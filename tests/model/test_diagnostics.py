"""Health signals: the ground-truth ones must tell a cheating head from a correct one."""

import math

import pytest
import torch

from cacl_cli.config import resolve, section
from cacl_cli.data.images import normalise_batch
from cacl_cli.data.world import World, correspondence_pairs
from cacl_cli.model.build import model_from_config
from cacl_cli.model.diagnostics import (
    first_jumps,
    jump_quality,
    match_quality,
    position_r2,
    roll_offset_cells,
    truth_health,
    verdict,
)

SIDE = 8


def one_hot_cells(place: torch.Tensor) -> torch.Tensor:
    """(B, HW) cell codes -> (B, HW, SIDE, SIDE) one-hot feature maps."""
    codes = torch.nn.functional.one_hot(place, SIDE * SIDE).float()  # B x HW x D
    return codes.transpose(1, 2).reshape(len(place), SIDE * SIDE, SIDE, SIDE)


def world_truth(count=6):
    world = World(section("world", size=80, objects_min=3, objects_max=5))
    return torch.from_numpy(correspondence_pairs(world, count, 8, 64, 8)[2])


def test_a_padding_code_scores_as_a_cheat():
    truth = world_truth()
    shifts = ((8, 24), (40, 16))  # the rolls of v and v+, in input pixels
    cells = torch.arange(SIDE * SIDE).expand(len(truth), -1)

    # Each cell codes the place it had in its rolled input: cell - roll (mod the grid).
    def code(shift):
        rows = (cells // SIDE - shift[0] // 8) % SIDE
        cols = (cells % SIDE - shift[1] // 8) % SIDE
        return one_hot_cells(rows * SIDE + cols)

    jumps = first_jumps(code(shifts[0]), code(shifts[1]))
    quality = jump_quality(jumps, truth, roll_offset_cells(shifts, SIDE, SIDE, 8), SIDE)
    assert quality["roll_offset"] == 1.0
    assert quality["near"] < 0.3


def test_the_worlds_true_identity_scores_as_correct():
    truth = world_truth()
    visible = truth >= 0
    # v's cell i carries the code of its true match; v+'s cell j carries j's own code.
    target = torch.where(visible, truth, torch.arange(SIDE * SIDE) + 0 * truth)
    c = one_hot_cells(target)
    c_plus = one_hot_cells(torch.arange(SIDE * SIDE).expand(len(truth), -1))
    jumps = first_jumps(c, c_plus)
    assert match_quality(jumps, truth, SIDE) == {"exact": 1.0, "near": 1.0}
    assert (
        jump_quality(jumps, truth, torch.zeros(SIDE * SIDE, dtype=torch.long), SIDE)["near"] == 1.0
    )


def test_position_r2_separates_coordinates_from_noise():
    rows, cols = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    coords = torch.stack([rows, cols]).float().expand(4, -1, -1, -1)
    assert position_r2(coords) > 0.999
    assert position_r2(torch.randn(4, 3, SIDE, SIDE)) < 0.2


def test_truth_health_leaves_training_state_untouched():
    cfg = resolve("tiny-world", ["model.width=8", "moco.queue_size=64", "moco.cycle_queue_size=64"])
    torch.manual_seed(0)
    model = model_from_config(cfg)
    world = World(cfg.world)
    v, v_plus, truth = correspondence_pairs(world, 4, 8, 64, 8)
    v, v_plus = normalise_batch(v), normalise_batch(v_plus)
    state = {k: t.clone() for k, t in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = truth_health(model, v, v_plus, torch.from_numpy(truth), seed=5)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(t, model.state_dict()[k]) for k, t in state.items())
    assert first == truth_health(model, v, v_plus, torch.from_numpy(truth), seed=5)
    assert {"truth/pixel_positive_near", "truth/cycle_jump_roll_offset"} <= set(first)


HEALTHY = {
    "global/spread": 0.5,
    "pixel/spread": 0.5,
    "cycle/spread": 0.9,
    "global/top1_batch": 0.3,
    "truth/pixel_positive_near": 0.98,
    "truth/cycle_jump_roll_offset": 0.01,
    "truth/backbone_match_near": 0.4,
}


def test_the_verdict_of_a_healthy_run_is_empty():
    assert verdict(HEALTHY, HEALTHY, batch_size=32) == []


def test_the_verdict_names_each_dead_or_cheating_sign():
    last = HEALTHY | {
        "step": 3000,
        "pixel/spread": 0.02,
        "global/top1_batch": 1 / 32,
        "truth/cycle_jump_roll_offset": 0.4,
        "truth/pixel_positive_near": 0.12,
        "truth/backbone_match_near": 0.2,
    }
    problems = " | ".join(verdict(HEALTHY, last, batch_size=32))
    for sign in (
        "pixel head collapsed",
        "tells no video from another",
        "follows the padding",
        "pixel positives are near chance",
        "backbone matching got worse",
    ):
        assert sign in problems


def test_an_early_dip_in_true_matches_is_not_called_a_problem():
    dipped = HEALTHY | {"truth/backbone_match_near": 0.2}
    assert verdict(HEALTHY, dipped | {"step": 300}, batch_size=32) == []
    assert verdict(HEALTHY, dipped | {"step": 1000}, batch_size=32) != []


@pytest.mark.parametrize("pool,regions", [(1, 16), (2, 4)])
def test_cycle_chance_counts_the_cells_or_regions_the_cycle_runs_on(pool, regions):
    cfg = resolve("tiny-world", ["model.width=8", "data.size=32", f"loss.cycle_pool={pool}"])
    model = model_from_config(cfg)
    v = torch.randn(2, 3, 32, 32)
    q, k = model.encode(v, v)
    size = model.queues["cycle"].size
    assert model.heads["cycle"].chance(q, k) == pytest.approx(math.log(regions + size))

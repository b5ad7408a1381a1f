"""Label propagation (DAVIS protocol): the vote, the J score, and the command on a real sequence."""

import numpy as np
import pytest
import torch

from cacl_cli.config import resolve, section
from cacl_cli.data.images import read_rgb
from cacl_cli.evaluate.propagate import _featurizer, propagate_step


def random_init(cfg):
    """The weights ``--random-init`` gives an evaluation of ``cfg``."""
    from cacl_cli.pretrained import Weights

    return Weights.of(None, cfg.model.arch, cfg.model.width, cfg.run.seed)


def test_each_position_takes_the_label_of_its_identical_context_position():
    # one-hot features: position i of the target matches position i of the context only
    h = w = 3
    feats = torch.eye(h * w).reshape(h * w, h, w)
    labels = torch.zeros(1, 2, h, w)
    labels[0, 1, 0, :] = 1.0  # top row is object
    labels[0, 0] = 1 - labels[0, 1]
    cfg = section("propagate", topk=1, radius=10.0, temperature=0.07)
    out = propagate_step(feats, feats[None], labels, cfg)
    torch.testing.assert_close(out, labels[0])


def test_votes_come_only_from_within_the_radius():
    h, w = 1, 5
    target = torch.ones(4, h, w) / 2  # every position equally similar to every context position
    context = torch.ones(1, 4, h, w) / 2
    labels = torch.zeros(1, 2, h, w)
    labels[0, 1, 0, 4] = 1.0  # only the rightmost position is object
    labels[0, 0] = 1 - labels[0, 1]
    out = propagate_step(target, context, labels, section("propagate", topk=5, radius=1.0))
    assert out[1, 0, 0] == 0  # 4 cells away: cannot hear the object's vote
    assert out[1, 0, 4] == pytest.approx(1 / 2)  # itself and its one neighbour within reach


@pytest.mark.parametrize("layer,channels", [("layer4", 64), ("layer3", 32), ("layer2", 16)])
def test_the_chosen_stage_gives_the_votes_features(layer, channels):
    cfg = resolve("propagate-cpu", ["model.width=8", f"propagate.layer={layer}"])
    featurize, source = _featurizer(cfg, random_init(cfg), cfg.propagate, torch.device("cpu"))
    features = featurize(np.zeros((48, 64, 3), np.uint8))  # cells last: (h, w, C)
    assert features.shape == (240 // 8, 320 // 8, channels) and source["layer"] == layer
    norms = features.float().norm(dim=2)  # unit vectors, to bf16's step where bf16 is native
    torch.testing.assert_close(norms, torch.ones(features.shape[:2]), atol=4e-3, rtol=0)


def full_affinity_step(target, keys, labels, cfg):
    """The definition, computed the long way: every target cell against every context cell, the
    cells beyond the radius masked afterwards (what the windowed step must equal)."""
    c, h, w = target.shape
    n = keys.shape[0]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cells = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()
    far = (torch.cdist(cells, cells) > cfg.radius).repeat(1, n)
    affinity = (target.flatten(1).t() @ keys.permute(1, 0, 2, 3).reshape(c, -1)).masked_fill(
        far, float("-inf")
    )
    best, index = affinity.topk(cfg.topk, dim=1)
    weight = torch.softmax(best / cfg.temperature, dim=1)
    value = labels.permute(0, 2, 3, 1).reshape(n * h * w, -1)
    return (weight.unsqueeze(2) * value[index]).sum(1).t().reshape(-1, h, w)


@pytest.mark.parametrize("tile", [1, 5, 12, 40])
def test_the_windowed_step_equals_the_full_definition_on_random_features(tile):
    """Grids that tiles do not divide, a radius that is not a whole number, and tiles smaller and
    larger than the window: the same soft labels as every-cell-against-every-cell."""
    torch.manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(3, 16, 23, 31), dim=1)
    target = torch.nn.functional.normalize(keys[-1] + 0.3 * torch.randn(16, 23, 31), dim=0)
    labels = torch.softmax(torch.randn(3, 4, 23, 31), dim=1)
    cfg = section("propagate", topk=7, radius=4.5, temperature=0.1)
    windowed = propagate_step(target, keys, labels, cfg, tile=tile)
    torch.testing.assert_close(windowed, full_affinity_step(target, keys, labels, cfg))


def test_the_windowed_step_gives_the_full_definitions_labels_on_real_frames(shared_data):
    """Colour features of five real frames (the colour baseline's, on blackswan) voting with the
    frames' true masks: the windowed step's labels are the full definition's on at least 99.9 %
    of the cells. (Colour features tie exactly where cells share a quantised colour; top-k may
    break such a tie either way, which changes a vote only where the tied cells disagree.)"""
    from cacl_cli.evaluate.propagate import colour_features, one_hot, open_sequence

    sequence = open_sequence(shared_data / "davis", "blackswan", 5, "auto")
    featurize = colour_features(240, "cpu")
    feats = torch.stack([featurize(read_rgb(p)).permute(2, 0, 1) for p in sequence.frames])
    size = tuple(feats.shape[2:])
    labels = torch.stack([one_hot(ids, void, 2, size) for ids, void in sequence.truth()[:4]])
    cfg = section("propagate", topk=10, radius=12.0, temperature=0.07)
    windowed = propagate_step(feats[-1], feats[:4], labels, cfg)
    full = full_affinity_step(feats[-1], feats[:4], labels, cfg)
    assert (windowed.argmax(0) == full.argmax(0)).float().mean() >= 0.999
    assert (windowed - full).abs().mean() < 1e-3


def test_bf16_features_stay_close_to_float32_and_are_recorded():
    """The backbone pass under bf16 autocast: unit features within a few bf16 steps of float32
    (bf16 keeps 8 bits of mantissa, ~0.4 % per value), recorded as the precision used."""
    cfg = resolve("propagate-cpu", ["model.width=8", "run.amp=bf16"])
    cpu = torch.device("cpu")
    featurize, source = _featurizer(cfg, random_init(cfg), cfg.propagate, cpu)
    cfg32 = resolve("propagate-cpu", ["model.width=8", "run.amp=off"])
    featurize32, source32 = _featurizer(cfg32, random_init(cfg32), cfg32.propagate, cpu)
    frame = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    low, full = featurize(frame), featurize32(frame)
    assert (source["precision"], source32["precision"]) == ("bfloat16", "float32")
    assert (low.dtype, full.dtype) == (torch.bfloat16, torch.float32) and low.shape == full.shape
    cosine = (low.float() * full).sum(2)
    assert cosine.min() > 0.98 and cosine.mean() > 0.995


@pytest.mark.parametrize("context", [0, 1, 3])
def test_the_context_bank_holds_the_first_frame_and_the_most_recent_ones(context):
    """Frame t is written once; before frame t is voted on, the bank holds frame 0 and frames
    t - context .. t - 1, as the definition's context list."""
    from cacl_cli.evaluate.propagate import ContextBank

    def frame(t):  # features and labels that say which frame they are
        return torch.full((2, 3, 4), float(t)), torch.full((2, 3, 1), float(t))

    bank = ContextBank(*frame(0), context)
    for t in range(1, 9):
        keys, labels = bank.context()
        held = sorted(int(v) for v in keys[0, 0, :, 0])
        assert held == [0] + list(range(max(1, t - context), t))
        assert sorted(int(v) for v in labels[0, 0, :, 0]) == held
        bank.add(*frame(t))


def test_bf16_votes_stay_with_float32_on_real_frames(shared_data):
    """The vote's products and top-k in bf16 (where the CPU has bf16 instructions), on a
    network's features of real frames: the same labels as float32 on at least 99 % of the cells.
    (Not on the colour baseline's four channels, whose near-ties bf16 cannot tell apart: its
    features stay float32.)"""
    from cacl_cli.evaluate.propagate import one_hot, open_sequence, vote

    sequence = open_sequence(shared_data / "davis", "blackswan", 5, "auto")
    cfg = resolve("propagate-cpu", ["model.width=16", "run.amp=off"])
    featurize, _ = _featurizer(cfg, random_init(cfg), cfg.propagate, torch.device("cpu"))
    feats = torch.stack([featurize(read_rgb(p)) for p in sequence.frames], dim=2)  # h w N C
    size = tuple(feats.shape[:2])
    labels = torch.stack(
        [one_hot(ids, void, 2, size).permute(1, 2, 0) for ids, void in sequence.truth()[:4]], dim=2
    )
    full = vote(feats[:, :, 4], feats[:, :, :4], labels, cfg.propagate)
    low = vote(feats[:, :, 4].bfloat16(), feats[:, :, :4].bfloat16(), labels, cfg.propagate)
    assert low.dtype == torch.float32
    assert (low.argmax(2) == full.argmax(2)).float().mean() >= 0.99

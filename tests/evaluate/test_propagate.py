"""Label propagation (DAVIS protocol): the vote, the J score, and the command on a real sequence."""

import json

import numpy as np
from PIL import Image
import pytest
import torch

from cacl_cli.config import resolve
from cacl_cli.evaluate.propagate import Propagation, _featurizer, propagate_step
from tests.commands.test_pretrain import one_line_error
from tests.conftest import run_cacl


def test_each_position_takes_the_label_of_its_identical_context_position():
    # one-hot features: position i of the target matches position i of the context only
    h = w = 3
    feats = torch.eye(h * w).reshape(h * w, h, w)
    labels = torch.zeros(1, 2, h, w)
    labels[0, 1, 0, :] = 1.0  # top row is object
    labels[0, 0] = 1 - labels[0, 1]
    cfg = Propagation(topk=1, radius=10.0, temperature=0.07)
    out = propagate_step(feats, feats[None], labels, cfg)
    torch.testing.assert_close(out, labels[0])


def test_votes_come_only_from_within_the_radius():
    h, w = 1, 5
    target = torch.ones(4, h, w) / 2  # every position equally similar to every context position
    context = torch.ones(1, 4, h, w) / 2
    labels = torch.zeros(1, 2, h, w)
    labels[0, 1, 0, 4] = 1.0  # only the rightmost position is object
    labels[0, 0] = 1 - labels[0, 1]
    out = propagate_step(target, context, labels, Propagation(topk=5, radius=1.0))
    assert out[1, 0, 0] == 0  # 4 cells away: cannot hear the object's vote
    assert out[1, 0, 4] == pytest.approx(1 / 2)  # itself and its one neighbour within reach


def test_propagate_on_the_davis_sample_writes_scores_and_masks(tmp_path, shared_data):
    out = tmp_path / "prop"
    args = ["--random-init", "--width", "8", "--frames", "4", "--size", "64", "--out", out]
    done = run_cacl("propagate", shared_data / "davis", *args)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "results.json").read_text())
    scores = result["sequences"]["blackswan"]
    assert scores["labels"] == "binary" and 0.0 <= scores["J&F"] <= 1.0
    assert scores["frames_scored"] == 2  # frames 1 and 2: the first and the last are not scored
    assert result["protocol"]["topk"] == 5 and result["weights"]["source"] == "random init"
    written = sorted(p.name for p in (out / "blackswan").glob("*.png"))
    assert written == ["00000.png", "00001.png", "00002.png", "00003.png"]
    mask = Image.open(out / "blackswan" / "00002.png")
    assert mask.mode == "P" and set(np.unique(np.array(mask))) <= {0, 1}
    assert "blackswan" in done.stdout


@pytest.mark.parametrize("layer,channels", [("layer4", 64), ("layer3", 32), ("layer2", 16)])
def test_the_chosen_stage_gives_the_votes_features(layer, channels):
    cfg = resolve("propagate-cpu", ["model.width=8", f"propagate.layer={layer}"])
    protocol = Propagation.from_section(cfg.propagate)
    featurize, source = _featurizer(cfg, {"random_init": True}, protocol, torch.device("cpu"))
    features = featurize(np.zeros((48, 64, 3), np.uint8))
    assert features.shape == (channels, 240 // 8, 320 // 8) and source["layer"] == layer
    torch.testing.assert_close(features.norm(dim=0), torch.ones(features.shape[1:]))


def test_propagate_errors_name_the_problem(tmp_path, shared_data):
    assert "not a DAVIS-format folder" in one_line_error(
        run_cacl("propagate", tmp_path, "--random-init")
    )
    davis = shared_data / "davis"
    assert "sequence nope" in one_line_error(
        run_cacl("propagate", davis, "--random-init", "--seq", "nope")
    )
    assert "--checkpoint" in one_line_error(run_cacl("propagate", davis))
    assert "--baseline nope" in one_line_error(run_cacl("propagate", davis, "--baseline", "nope"))
    assert "propagate.layer" in one_line_error(
        run_cacl("propagate", davis, "--random-init", "--layer", "layer1")
    )

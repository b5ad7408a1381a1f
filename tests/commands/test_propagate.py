"""`cacl propagate` end to end: scores, masks, and one-line refusals."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.commands.test_pretrain import one_line_error
from tests.conftest import run_cacl


def test_propagate_on_the_davis_sample_writes_scores_and_masks(tmp_path, shared_data):
    out = tmp_path / "prop"
    args = ["--random-init", "--width", "8", "--frames", "4", "--size", "64", "--out", out]
    done = run_cacl("propagate", shared_data / "davis", *args)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "results.json").read_text())
    scores = result["sequences"]["blackswan"]
    assert scores["labels"] == "binary" and 0.0 <= scores["J&F"] <= 1.0
    assert scores["J&F_x100"] == pytest.approx(100 * scores["J&F"])
    assert scores["frames_scored"] == 2  # frames 1 and 2: the first and the last are not scored
    assert result["protocol"]["topk"] == 5 and result["weights"]["source"] == "random init"
    written = sorted(p.name for p in (out / "blackswan").glob("*.png"))
    assert written == ["00000.png", "00001.png", "00002.png", "00003.png"]
    mask = Image.open(out / "blackswan" / "00002.png")
    assert mask.mode == "P" and set(np.unique(np.array(mask))) <= {0, 1}
    assert "blackswan" in done.stdout


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


def test_a_mask_of_another_size_is_refused_before_any_mask_is_written(tmp_path, shared_data):
    import shutil

    davis = tmp_path / "davis"
    for kind, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".png")):
        folder = davis / kind / "480p" / "blackswan"
        folder.mkdir(parents=True)
        for n in range(3):
            name = f"{n:05d}{suffix}"
            shutil.copy(shared_data / "davis" / kind / "480p" / "blackswan" / name, folder / name)
    mask = davis / "Annotations" / "480p" / "blackswan" / "00002.png"
    image = Image.open(mask)
    image.resize((image.width // 2, image.height // 2), Image.NEAREST).save(mask)
    out = tmp_path / "out"
    done = run_cacl("propagate", davis, "--baseline", "copy", "--out", out)
    assert "00002.png is 427x240 but 00000.jpg is 854x480" in one_line_error(done)
    assert done.returncode == 2 and not out.exists()

"""`cacl world`: the built-in world exported as clips, a labelled set and DAVIS clips."""

import json

from tests.conftest import run_cacl


def test_the_world_command_writes_every_part_and_its_davis_clips_score(tmp_path):
    result = run_cacl(
        "world",
        tmp_path / "out",
        "--clips",
        "2",
        "--train-images",
        "2",
        "--val-images",
        "1",
        "--set",
        "world.size=32",
        "--set",
        "world.frames=10",
        "--davis-clips",
        "1",
    )
    assert result.returncode == 0, result.stderr
    davis = tmp_path / "out" / "davis"
    assert len(list((davis / "Annotations" / "480p" / "world_0000").glob("*.png"))) == 10
    scored = run_cacl("propagate", davis, "--baseline", "copy", "--out", tmp_path / "prop")
    assert scored.returncode == 0, scored.stderr
    assert 0 < json.loads((tmp_path / "prop" / "results.json").read_text())["J&F_mean"] <= 1
    assert len(list((tmp_path / "out" / "videos").rglob("*.mp4"))) == 2
    assert len(list((tmp_path / "out" / "voc" / "VOC2012" / "JPEGImages").glob("*.jpg"))) == 3

"""`cacl presets`: the shipped presets listed, and one resolved with --set, as YAML."""

import yaml

from tests.conftest import run_cacl


def test_the_list_names_every_shipped_preset_with_its_description():
    done = run_cacl("presets")
    assert done.returncode == 0
    for name in ("tiny-world", "video-cpu", "propagate-dino", "r18-kinetics"):
        assert name in done.stdout
    assert "defaults" not in done.stdout.split()


def test_one_preset_prints_as_yaml_with_every_default_and_the_set_values(tmp_path):
    done = run_cacl("presets", "video-cpu", "--set", "optim.lr=2.0")
    assert done.returncode == 0, done.stderr
    tree = yaml.safe_load(done.stdout)
    assert tree["optim"]["lr"] == 2.0 and tree["data"]["size"] == 96
    assert tree["model"]["width"] == 16 and tree["extract"]["pairs_per_clip"] == 100
    saved = tmp_path / "mine.yaml"
    saved.write_text(done.stdout)
    again = run_cacl("presets", saved)  # the printout is a preset file itself
    assert yaml.safe_load(again.stdout)["optim"]["lr"] == 2.0

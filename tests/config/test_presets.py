"""Presets: inheritance, overrides, validation, and the shipped files."""

import re

import pytest
import yaml

from cacl_cli.config import preset_dir, preset_names, resolve
from cacl_cli.errors import CaclError

PAPER_NAMES = {"tiny-world", "r18-kinetics", "r50-in-kinetics", "moco-v2-r18", "two-heads-r18"}


def test_shipped_presets_include_the_paper_names_and_all_resolve():
    assert PAPER_NAMES <= set(preset_names())
    for name in preset_names():
        cfg = resolve(name)
        assert cfg.preset.name == name and cfg.schedule.steps > 0


def test_presets_live_inside_the_package():
    assert preset_dir().name == "presets"
    assert (preset_dir() / "defaults.yaml").is_file()
    import cacl_cli.presets  # noqa: F401 - importable as a package, so a wheel carries it


def test_base_inheritance_and_preset_values():
    moco = resolve("moco-v2-r18")
    assert moco.preset.chain == ("r18-kinetics", "moco-v2", "moco-v2-r18")
    assert (moco.heads["global"], moco.heads.pixel, moco.heads.cycle) == (True, False, False)
    assert moco.data.size == 224  # from the base
    assert resolve("tiny-world").model.width == 16


def test_set_overrides_parse_yaml_scalars():
    cfg = resolve(
        "tiny-world",
        [
            "optim.lr=0.5",
            "loss.soft_cycle=false",
            "augment.crop_scale=[0.5, 1]",
            "schedule.steps=12",
        ],
    )
    assert cfg.optim.lr == 0.5 and cfg.loss.soft_cycle is False
    assert cfg.augment.crop_scale == (0.5, 1) and cfg.schedule.steps == 12


def test_int_is_accepted_where_a_float_is_expected():
    assert resolve("tiny-world", ["optim.lr=2"]).optim.lr == 2.0


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=0.5", "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optimm.lr=0.5", "unknown key 'optimm'"),
        ("data.batch_size=abc", "key 'data.batch_size' must be int"),
        ("data.batch_size=0", "key 'data.batch_size' must be from 1 to 65536"),
        ("data.batch_size=-4", "must be from 1 to 65536"),
        (
            "model.arch=resnet19",
            "must be one of resnet18, resnet50; got 'resnet19' (did you mean 'resnet18'?)",
        ),
        ("loss.soft_cycle=3", "key 'loss.soft_cycle' must be bool"),
        ("optim=3", "'optim' is a section"),
        ("novalue", "write it as KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(CaclError) as err:
        resolve("tiny-world", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(CaclError, match="unknown preset 'tiny-wrld'.*did you mean 'tiny-world'"):
        resolve("tiny-wrld")


def test_preset_file_with_unknown_key_and_yaml_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny-world\nmodel:\n  widht: 8\n")
    with pytest.raises(
        CaclError, match=r"unknown key 'model.widht' \(did you mean 'model.width'\?\)"
    ):
        resolve(str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(CaclError, match="broken.yaml line .*not valid YAML"):
        resolve(str(broken))


def test_user_preset_file_inherits_a_shipped_one(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: tiny-world\nschedule:\n  steps: 7\n")
    cfg = resolve(str(mine))
    assert cfg.schedule.steps == 7 and cfg.model.width == 16
    assert cfg.preset.chain == ("tiny-world", "mine")


def test_inheritance_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(CaclError, match="inherits itself"):
        resolve(str(tmp_path / "a.yaml"))


def test_python_tags_are_refused(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("run: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(CaclError, match="not valid YAML"):
        resolve(str(evil))
    assert not (tmp_path / "pwned").exists()


def test_resolved_config_round_trips(tmp_path):
    from cacl_cli.config import write_config

    cfg = resolve("two-heads-r18", ["optim.lr=0.3"])
    write_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["lr"] == 0.3
    again = resolve(str(tmp_path / "config.yaml"))
    assert again == cfg


def test_typed_views_match_the_schema_and_are_read_only():
    """Every key of defaults.yaml is a field of its section's view, and a resolved config
    cannot be written into."""
    import dataclasses

    import yaml

    from cacl_cli.config import SECTIONS, preset_dir

    defaults = yaml.safe_load((preset_dir() / "defaults.yaml").read_text())
    cfg = resolve("tiny-world")
    assert set(defaults) == set(SECTIONS) - {"preset"}
    for name, section in defaults.items():
        assert set(cfg.plain()[name]) == set(section), name
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 2.0
    assert cfg.heads.on() == ("global", "pixel", "cycle")
    assert resolve("two-heads-r18").heads.on() == ("global", "pixel")


def test_option_values_are_taken_as_typed_not_as_yaml():
    cfg = resolve("tiny-world", values={"data.path": "2024", "model.init": "yes"})
    assert cfg.data.path == "2024" and cfg.model.init == "yes"


def test_presets_layer_left_to_right_in_a_file_and_with_a_plus(tmp_path):
    """``base: [a, b]`` and ``--preset a+b`` merge a, then b (its keys win), then the file's own."""
    layered = tmp_path / "mine.yaml"
    layered.write_text("base: [tiny-world, moco-v2]\noptim: {lr: 2.0}\n")
    cfg = resolve(str(layered))
    assert cfg.preset.chain == ("tiny-world", "moco-v2", "mine")
    assert cfg.model.width == 16 and cfg.heads.on() == ("global",) and cfg.optim.lr == 2.0
    plus = resolve("tiny-world+moco-v2")
    assert plus.preset.name == "tiny-world+moco-v2"
    assert {**plus.plain(), "preset": None} == {
        **resolve(str(layered), ["optim.lr=16.0"]).plain(),
        "preset": None,
    }
    later = tmp_path / "pixel-on.yaml"
    later.write_text("heads: {pixel: true}\n")
    assert resolve(f"moco-v2+{later}").heads.on() == ("global", "pixel")  # the later layer wins


@pytest.mark.parametrize(
    "base,message",
    [
        ("base: [tiny-world, 3]", "list presets to layer"),
        ("base: []", "list presets to layer"),
        ("base: [tiny-world, nosuch]", "unknown preset 'nosuch'"),
    ],
)
def test_a_bad_layer_is_named(tmp_path, base, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "\n")
    with pytest.raises(CaclError, match=message):
        resolve(str(bad))
    with pytest.raises(CaclError, match="empty preset name"):
        resolve("tiny-world+")


def test_a_base_file_is_read_beside_the_preset_that_names_it(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "parent.yaml").write_text("base: tiny-world\noptim:\n  lr: 0.7\n")
    (mine / "child.yaml").write_text("base: ./parent.yaml\nschedule:\n  steps: 11\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory holds no parent.yaml
    cfg = resolve(str(mine / "child.yaml"))
    assert cfg.optim.lr == 0.7 and cfg.schedule.steps == 11 and cfg.model.width == 16


def test_a_bad_key_in_a_file_names_the_file_not_the_preset_it_came_from(tmp_path):
    saved = tmp_path / "run" / "config.yaml"  # a run's config.yaml, edited by hand
    saved.parent.mkdir()
    saved.write_text("preset:\n  name: tiny-world\n  chain: [tiny-world]\noptim:\n  lr: fast\n")
    with pytest.raises(CaclError, match=f"^{saved}: key 'optim.lr' must be float"):
        resolve(str(saved))


@pytest.mark.parametrize("hidden,shown", [("lr\u200b", "lr\\u200b"), ("l\tr", "l\\tr")])
def test_a_key_with_a_hidden_character_is_shown_escaped_beside_the_suggestion(
    tmp_path, hidden, shown
):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f'base: tiny-world\noptim:\n  "{hidden}": 0.5\n'.replace("\t", "\\t"))
    with pytest.raises(CaclError) as caught:
        resolve(str(mine))
    assert f"unknown key 'optim.{shown}' (did you mean 'optim.lr'?)" in str(caught.value)


def test_a_yaml_of_nested_anchors_is_refused_in_a_short_line(tmp_path):
    """A few hundred bytes of anchors expand to millions of items; the error shows a few."""
    layers = ['&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    layers += [f"&l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 7)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"optim: [{', '.join(layers)}]\n")
    assert bomb.stat().st_size < 600
    with pytest.raises(CaclError, match="'optim' is a section; give it keys, not") as caught:
        resolve(str(bomb))
    assert len(str(caught.value)) < 300


def test_a_deeply_nested_preset_is_one_line(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("optim:\n" + "".join(f"{'  ' * n}k{n}:\n" for n in range(1, 3000)) + "x: 1\n")
    with pytest.raises(CaclError, match="nested too deeply|unknown key"):
        resolve(str(deep))
    flow = tmp_path / "flow.yaml"
    flow.write_text("optim: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(CaclError, match="flow.yaml: nested too deeply"):
        resolve(str(flow))


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.init=true", "key 'model.init' must be a path or null, got True"),
        ("data.path=[1]", "key 'data.path' must be a path or null, got [1]"),
    ],
)
def test_a_path_key_takes_text_or_null(override, message):
    with pytest.raises(CaclError, match=re.escape(message)):
        resolve("tiny-world", [override])
    assert resolve("tiny-world", ["data.path=2024"]).data.path == "2024"  # the folder 2024


def test_a_diamond_of_bases_reads_each_file_once(tmp_path, monkeypatch):
    """Thirty levels, each naming the level below twice: 2^30 paths, thirty-one files."""
    from cacl_cli.config import presets

    (tmp_path / "level0.yaml").write_text("base: tiny-world\nrun:\n  seed: 0\n")
    for n in range(1, 31):
        below = f"level{n - 1}.yaml"
        (tmp_path / f"level{n}.yaml").write_text(f"base: [{below}, {below}]\nrun:\n  seed: {n}\n")
    reads = []
    real = presets._read_yaml
    monkeypatch.setattr(presets, "_read_yaml", lambda path: reads.append(path) or real(path))
    assert resolve(str(tmp_path / "level30.yaml")).run.seed == 30
    mine = [p for p in reads if p.parent == tmp_path]
    assert len(mine) == len(set(mine)) == 31


def test_a_chain_of_too_many_distinct_files_is_refused_in_one_line(tmp_path):
    (tmp_path / "p0.yaml").write_text("run:\n  seed: 0\n")
    for n in range(1, 80):
        (tmp_path / f"p{n}.yaml").write_text(f"base: p{n - 1}.yaml\n")
    with pytest.raises(CaclError, match="more than 64 preset files"):
        resolve(str(tmp_path / "p79.yaml"))


def test_a_relative_base_inside_a_layered_name_is_read_beside_the_preset(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "q.yaml").write_text("run:\n  seed: 7\n")
    (folder / "top.yaml").write_text("base: q.yaml+moco-v2\n")
    (tmp_path / "q.yaml").write_text("run:\n  seed: 99\n")  # the working directory's: not it
    monkeypatch.chdir(tmp_path)
    cfg = resolve(str(folder / "top.yaml"))
    assert cfg.run.seed == 7 and not cfg.heads.pixel

"""model/heads/__init__.py: a head is one module (its class and its keys) and one line in HEADS;
the config reads the heads' keys from their rendering, without torch."""

import sys
import textwrap

import yaml

from cacl_cli.cli import reference_page
from cacl_cli.config import schema
from cacl_cli.model import heads
from tests.conftest import ROOT, run_cacl, sets


def test_the_shipped_head_keys_are_the_heads_own_rendered():
    fix = "python -m cacl_cli.model.heads > cacl_cli/config/head_keys.py"
    shipped = (ROOT / "cacl_cli" / "config" / "head_keys.py").read_text()
    assert shipped == heads.render_head_keys(), fix


def test_every_head_key_is_a_config_key_of_its_section():
    for name, keys in heads.head_keys().items():
        assert f"heads.{name}" in keys  # each head can be turned off
        for dotted, spec in keys.items():
            assert schema.KEYS[dotted].default == spec.default, dotted


TOY = '''
"""A toy dense head: one module, its keys beside its code."""
from cacl_cli.config.keys import key
from cacl_cli.model.heads.base import DenseHead

KEYS = {
    "heads.toy": key(True, "train the toy head"),
    "loss.toy_weight": key(0.5, "the toy term's weight", span=(0, 10)),
}


class ToyHead(DenseHead):
    name = "toy"

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.loss.toy_weight, cfg.moco.queue_size, cfg.loss.tau,
                   cfg.moco.pixels_per_image)

    def loss(self, q, k, queue, landing):
        return 1 - (q["toy"] * k["toy"]).sum(1).mean()
'''


def test_a_new_head_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    """A toy head added the way the docs say: its keys reach the presets, --set, the rendered
    defaults, docs/commands.md and the rendered head keys, and it trains beside the others."""
    (tmp_path / "toyheads").mkdir()
    (tmp_path / "toyheads" / "toy_head.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    from toyheads.toy_head import ToyHead

    registry = {**heads.HEADS, "toy": ToyHead}  # the one line
    monkeypatch.setitem(heads.HEADS, "toy", ToyHead)
    rendered = {}
    exec(heads.render_head_keys(registry), rendered)  # what the config would ship
    assert "loss.toy_weight" in heads.render_head_keys(registry)
    monkeypatch.setattr(schema, "SECTIONS", schema.sections_with(rendered["HEAD_KEYS"]))
    monkeypatch.setattr(schema, "KEYS", dict(schema.keys()))

    shown = yaml.safe_load(run_cacl("presets", "tiny-world", "--set", "loss.toy_weight=2").stdout)
    assert shown["heads"]["toy"] is True and shown["loss"]["toy_weight"] == 2.0
    assert "toy_weight: 0.5" in schema.render_defaults()  # presets/defaults.yaml's rendering
    assert "toy_weight: 0.5" in reference_page()  # docs/commands.md's rendering
    refused = run_cacl("presets", "tiny-world", "--set", "loss.toy_weight=99")
    assert refused.returncode == 2 and "'loss.toy_weight' must be from 0 to 10" in refused.stderr

    run = tmp_path / "run"
    done = run_cacl("pretrain", "--out", run, *sets("schedule.steps=2", "loss.toy_weight=0.25"))
    assert done.returncode == 0, done.stderr
    last = yaml.safe_load((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "toy/loss" in last and "cycle/loss" in last
    assert "toyheads.toy_head" in sys.modules

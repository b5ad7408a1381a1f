"""model/heads/cycle_head.py: g_C, the walk v -> v+ -> [v ; queue] that should return."""

import pytest

from cacl_cli.config import resolve
from cacl_cli.errors import CaclError
from cacl_cli.model.heads import CycleHead


def test_its_keys_come_from_the_config_and_its_own_tau_falls_back_to_tau():
    cfg = resolve(
        "tiny-world",
        [
            "loss.cycle_weight=0.2",
            "loss.cycle_tau=0",
            "loss.tau=0.1",
            "loss.cycle_pool=2",
            "moco.cycle_queue_size=32",
        ],
    )
    head = CycleHead.from_config(cfg)
    assert (head.weight, head.tau, head.pool, head.queue_size) == (0.2, 0.1, 2, 32)
    assert head.reroll == (cfg.loss.cycle_return == "reroll") and head.wants_landing()
    assert CycleHead.from_config(resolve("tiny-world", ["loss.cycle_tau=0.3"])).tau == 0.3


def test_the_soft_cycle_on_the_global_heads_affinities_needs_the_global_head():
    cfg = resolve(
        "tiny-world",
        [
            "loss.soft_cycle=true",
            "loss.soft_target_head=global",
            "heads.global=false",
            "loss.pixel_positive=position",
        ],
    )
    with pytest.raises(CaclError, match="'loss.soft_cycle' needs the global head"):
        CycleHead.check(cfg, 1)
    own = resolve(
        "tiny-world",
        [
            "loss.soft_cycle=true",
            "loss.soft_target_head=cycle",
            "heads.global=false",
            "loss.pixel_positive=position",
        ],
    )
    CycleHead.check(own, 1)  # its own affinities need no other head

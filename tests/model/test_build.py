"""Building the model from a config, and compiling its encoders."""

import pytest
import torch

from cacl_cli.config import resolve
from cacl_cli.errors import CaclError
from cacl_cli.model import heads
from cacl_cli.model.build import check_heads, compile_encoders, model_from_config
from cacl_cli.model.cacl import CACL

SMALL = [
    "model.width=8",
    "data.size=32",
    "data.batch_size=8",
    "moco.queue_size=64",
    "moco.cycle_queue_size=16",
    "moco.pixels_per_image=2",
]


def one_step(model, v, v_plus):
    torch.manual_seed(2)  # the same rolls, permutations and queue picks for both models
    out = model(v, v_plus, diagnose=False)
    out.loss.backward()
    return out.loss.detach(), [p.grad for p in model.online.parameters()]


@pytest.mark.slow  # a minute and more of compilation on a CPU: tiny-world's own model only
def test_compiled_encoders_give_the_eager_step_within_tolerance():
    cfg = resolve("tiny-world", SMALL)
    torch.manual_seed(0)
    eager = model_from_config(cfg).train()
    torch.manual_seed(0)
    compiled = compile_encoders(model_from_config(cfg).train())
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints unchanged
    torch.manual_seed(1)
    batch = (torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32))
    (loss, grads), (loss_c, grads_c) = one_step(eager, *batch), one_step(compiled, *batch)
    assert loss_c.item() == pytest.approx(loss.item(), rel=1e-5)
    for g, g_c in zip(grads, grads_c):  # within 1e-3 of each tensor's largest gradient
        assert (g_c - g).abs().max() <= 1e-3 * g.abs().max() + 1e-8


def test_queue_size_must_fit_the_keys_per_step():
    cfg = resolve("tiny-world", ["moco.queue_size=100", "data.batch_size=32"])
    with pytest.raises(CaclError, match="'moco.queue_size' is 100 .* receives 32 keys"):
        check_heads(cfg)
    cfg = resolve("tiny-world", ["moco.cycle_queue_size=96", "moco.pixels_per_image=8"])
    with pytest.raises(CaclError, match="use a multiple of 256"):
        check_heads(cfg)


class ToyHead(heads.DenseHead):
    """A head written as a new one would be: pulls each cell towards the same cell of v+."""

    name = "toy"

    def loss(self, q, k, queue, landing):
        return 1 - (q["toy"] * k["toy"]).sum(1).mean()


def test_the_model_takes_any_head_beside_the_others():
    """The model loops over the heads it is given (tests/model/heads/test_registry.py adds one
    through the registry and the presets)."""
    cfg = resolve("tiny-world", SMALL)
    toy = ToyHead(weight=0.5, queue_size=16, tau=0.1, pixels_per_image=2)
    model = CACL(cfg.model, cfg.moco, [heads.GlobalHead.from_config(cfg), toy])
    v, v_plus = torch.randn(2, 4, 3, 32, 32)
    out = model(v, v_plus)
    assert set(out.terms) == {"global", "toy"} and set(model.queues) == {"global", "toy"}
    total = out.terms["global"] + 0.5 * out.terms["toy"]
    assert float(out.loss.detach()) == pytest.approx(float(total.detach()))
    assert {"toy/spread", "toy/chance"} <= set(out.diagnostics)
    assert int(model.queues["toy"].ptr) == 8  # 4 images x 2 cells, sampled by DenseHead
    out.loss.backward()
    assert model.online.heads["toy"][0].weight.grad.abs().sum() > 0


def test_each_head_refuses_what_it_cannot_train_on():
    with pytest.raises(CaclError, match="all false"):
        check_heads(
            resolve("tiny-world", ["heads.global=false", "heads.pixel=false", "heads.cycle=false"])
        )
    with pytest.raises(CaclError, match="'loss.pixel_positive' is 'global'"):
        check_heads(
            resolve(
                "tiny-world",
                ["heads.global=false", "loss.soft_cycle=false", "loss.pixel_positive=global"],
            )
        )
    check_heads(
        resolve(
            "tiny-world",
            ["heads.global=false", "loss.soft_cycle=false", "loss.pixel_positive=position"],
        )
    )

"""Building the model from a config, and compiling its encoders."""

import pytest
import torch

from cacl_cli.config import resolve
from cacl_cli.model.build import compile_encoders, model_from_config

SMALL = ["model.width=8", "data.size=32", "data.batch_size=8", "moco.queue_size=64",
         "moco.cycle_queue_size=16", "moco.pixels_per_image=2"]  # fmt: skip


def one_step(model, v, v_plus):
    torch.manual_seed(2)  # the same rolls, permutations and queue picks for both models
    out = model(v, v_plus, diagnose=False)
    out.loss.backward()
    return out.loss.detach(), [p.grad for p in model.online.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("dense", [[], ["model.dense_stage=layer3", "model.dense_neck=1"]])
def test_compiled_encoders_give_the_eager_step_within_tolerance(dense):
    cfg = resolve("tiny-world", SMALL + dense)
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

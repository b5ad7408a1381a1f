"""The CACL module: momentum encoder, queues, and every ablation switch."""

import pytest
import torch

from cacl_cli.config import check_run, resolve
from cacl_cli.errors import CaclError
from cacl_cli.model import losses
from cacl_cli.model.build import check_heads, model_from_config
from cacl_cli.model.diagnostics import health

SMALL = ["model.width=8", "moco.queue_size=64", "moco.pixels_per_image=2", "data.size=32"]


def small_model(*overrides, seed=0):
    torch.manual_seed(seed)
    cfg = resolve("tiny-world", SMALL + list(overrides))
    check_run(cfg, "pretrain")  # the rules between keys, as every command applies them
    check_heads(cfg)
    return model_from_config(cfg)


def frames(seed=1, batch=4, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g), torch.randn(
        batch, 3, size, size, generator=g
    )


def test_momentum_update_is_an_ema_of_parameters_only():
    model = small_model("moco.momentum=0.9")
    with torch.no_grad():
        for p in model.online.parameters():
            p.add_(1.0)
    before_q = [p.clone() for p in model.online.parameters()]
    before_k = [p.clone() for p in model.momentum_encoder.parameters()]
    model.momentum_encoder.backbone.bn1.running_mean.fill_(7.0)
    model.momentum_update()
    for q, k, new in zip(before_q, before_k, model.momentum_encoder.parameters()):
        torch.testing.assert_close(new, 0.9 * k + 0.1 * q)
    assert torch.all(model.momentum_encoder.backbone.bn1.running_mean == 7.0)
    assert not any(p.requires_grad for p in model.momentum_encoder.parameters())


def test_forward_leaves_the_momentum_encoder_to_the_loop():
    """One home for the momentum update, the training loop: forward, called once or per
    micro-batch, never moves the momentum encoder."""
    model = small_model("moco.momentum=0.5")
    with torch.no_grad():
        for p in model.online.parameters():
            p.add_(1.0)  # an update would now move every momentum parameter
    before = [p.clone() for p in model.momentum_encoder.parameters()]
    for _ in range(2):
        model(*frames())
    assert all(torch.equal(a, b) for a, b in zip(before, model.momentum_encoder.parameters()))
    assert "update_momentum" not in model.forward.__code__.co_varnames


def test_forward_keys_come_from_the_momentum_encoder_and_enqueue_after_the_loss():
    model = small_model("model.pixel_shuffle=off", "moco.shuffle_bn_groups=1")
    v, v_plus = frames()
    queue_before = {h: q.features.clone() for h, q in model.queues.items()}
    ptr_before = {h: int(q.ptr) for h, q in model.queues.items()}
    out = model(v, v_plus)
    # Keys come from the momentum encoder as it stands, negatives from the old queue.
    with torch.no_grad():
        q = model.online(v)
        k = model.momentum_encoder(v_plus)
    expected = losses.info_nce(q["global_vector"], k["global_vector"], queue_before["global"], 0.07)
    torch.testing.assert_close(out.terms["global"], expected, rtol=1e-4, atol=1e-5)
    # Then the keys are enqueued: B global vectors, B x pixels_per_image pixels per dense head.
    assert int(model.queues["global"].ptr) == ptr_before["global"] + 4
    torch.testing.assert_close(model.queues["global"].features[:4], k["global_vector"])
    assert int(model.queues["pixel"].ptr) == ptr_before["pixel"] + 8
    assert int(model.queues["cycle"].ptr) == ptr_before["cycle"] + 8


def test_gradients_reach_the_online_network_only():
    model = small_model()
    out = model(*frames())
    out.loss.backward()
    assert all(p.grad is not None for p in model.online.parameters())
    assert all(p.grad is None for p in model.momentum_encoder.parameters())


def loss_terms(overrides, seed=0):
    """Terms of one forward with fixed weights, inputs and random state."""
    reference = small_model(seed=0)
    model = small_model(*overrides)
    model.load_state_dict(reference.state_dict(), strict=False)
    torch.manual_seed(seed)
    return {h: float(t.detach()) for h, t in model(*frames()).terms.items()}


# The paper's settings, which tiny-world changes.
BASE = [
    "model.pixel_shuffle=off",
    "loss.soft_cycle=true",
    "loss.pixel_positive=global",
    "loss.cycle_return=self",
]


@pytest.mark.parametrize(
    "switch,term",
    [
        ("loss.soft_cycle=false", "cycle"),
        ("loss.pixel_positive=position", "pixel"),
        ("loss.symmetric=true", "global"),
        ("loss.tau=0.2", "global"),
        ("model.pixel_shuffle=independent", "cycle"),
        ("loss.cycle_return=reroll", "cycle"),
        ("loss.cycle_tau=0.2", "cycle"),
        ("loss.cycle_pool=2", "cycle"),
        ("loss.soft_target_head=cycle", "cycle"),
    ],
)
def test_each_switch_changes_the_loss(switch, term):
    base = loss_terms(BASE)
    changed = loss_terms(BASE + [switch])
    assert changed[term] != pytest.approx(base[term], rel=1e-4)


def test_weights_scale_the_total_and_leave_each_logged_term_as_it_is():
    torch.manual_seed(0)
    model = small_model("loss.cycle_weight=0.25", "loss.pixel_weight=0.5")
    out = model(*frames())
    expected = out.terms["global"] + 0.5 * out.terms["pixel"] + 0.25 * out.terms["cycle"]
    torch.testing.assert_close(out.loss, expected)
    assert loss_terms(BASE + ["loss.cycle_weight=0.25"])["cycle"] == pytest.approx(
        loss_terms(BASE)["cycle"], rel=1e-6
    )


def test_shared_and_independent_shuffle_differ():
    shared = loss_terms(["model.pixel_shuffle=shared"], seed=3)
    independent = loss_terms(["model.pixel_shuffle=independent"], seed=3)
    assert shared["cycle"] != pytest.approx(independent["cycle"], rel=1e-4)


@pytest.mark.parametrize(
    "off,kept",
    [
        ("heads.cycle=false", {"global", "pixel"}),
        ("heads.pixel=false", {"global", "cycle"}),
    ],
)
def test_switching_a_head_off_removes_its_term_and_queue(off, kept):
    model = small_model(off)
    assert set(model.queues) == kept
    assert set(model(*frames()).terms) == kept


def moves(term: torch.Tensor, module: torch.nn.Module) -> bool:
    """Whether ``term`` has a non-zero gradient on any of ``module``'s parameters."""
    params = list(module.parameters())
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_dense_heads_on_layer3_leave_layer4_to_the_global_head():
    heads = small_model("model.dense_stage=layer3").online.heads
    assert heads["pixel"][0].in_channels == heads["cycle"][0].in_channels == 4 * 8  # width 8
    assert heads["global"][0].in_channels == 8 * 8
    for stage, dense_moves_layer4 in (("layer4", True), ("layer3", False)):
        model = small_model(f"model.dense_stage={stage}")
        out, backbone = model(*frames()), model.online.backbone
        dense = out.terms["pixel"] + out.terms["cycle"]
        assert moves(dense, backbone.layer3)
        assert moves(dense, backbone.layer4) == dense_moves_layer4
        assert moves(out.terms["global"], backbone.layer4)


def test_a_dense_neck_sits_between_layer4_and_the_dense_heads_only():
    model = small_model("model.dense_neck=1")
    out, backbone, neck = model(*frames()), model.online.backbone, model.online.neck
    assert len(neck) == 1 and not {id(p) for p in neck.parameters()} & {
        id(p) for p in backbone.parameters()
    }
    assert moves(out.terms["pixel"] + out.terms["cycle"], neck)
    assert moves(out.terms["pixel"] + out.terms["cycle"], backbone.layer4)  # through the neck
    assert not moves(out.terms["global"], neck)
    assert len(small_model("model.dense_neck=0").online.neck) == 0  # the paper's: no neck


def test_a_model_without_dense_heads_gets_no_neck_however_many_blocks_are_asked():
    moco = small_model("heads.pixel=false", "heads.cycle=false", "model.dense_neck=2")
    assert len(moco.online.neck) == 0 and len(moco.momentum_encoder.neck) == 0
    assert len(small_model("heads.pixel=false", "model.dense_neck=2").online.neck) == 2


def test_pixel_head_alone_needs_position_positives():
    with pytest.raises(CaclError, match="loss.pixel_positive"):
        small_model("heads.global=false", "heads.cycle=false", "loss.pixel_positive=global")
    model = small_model("heads.global=false", "heads.cycle=false", "loss.pixel_positive=position")
    assert set(model(*frames()).terms) == {"pixel"}


def test_diagnostics_separate_spread_features_from_collapsed_ones():
    model = small_model()
    v, v_plus = frames()
    q, k = model.encode(v, v_plus)
    healthy = health(model, q, k)
    assert 0 <= healthy["global/top1_batch"] <= 1 and 0 <= healthy["cycle/back_rate"] <= 1
    collapsed = {name: torch.ones_like(t) if t.dim() == 4 else t for name, t in q.items()}
    collapsed = {n: torch.nn.functional.normalize(t, dim=1) for n, t in collapsed.items()}
    assert health(model, collapsed, k)["cycle/spread"] == pytest.approx(0.0, abs=1e-6)
    random = torch.nn.functional.normalize(torch.randn(64, 128, 4, 4), dim=1)
    assert health(model, {**q, "cycle": random}, k)["cycle/spread"] == pytest.approx(1.0, abs=0.1)


def test_rerolled_cycle_return_trains_and_differs_from_the_papers_return():
    v, v_plus = frames()
    plain = small_model("loss.cycle_return=self")(v, v_plus).terms["cycle"]
    again = small_model("loss.cycle_return=self")(v, v_plus).terms["cycle"]
    assert torch.equal(plain, again)
    rerolled = small_model("loss.cycle_return=reroll")
    out = rerolled(v, v_plus)
    assert torch.isfinite(out.terms["cycle"]) and not torch.equal(out.terms["cycle"], plain)
    out.loss.backward()
    assert rerolled.online.heads["cycle"][0].weight.grad.abs().sum() > 0


def test_cycle_tau_zero_is_tau_and_moves_the_cycle_term_only():
    base = loss_terms(BASE + ["loss.tau=0.1"])
    assert loss_terms(BASE + ["loss.tau=0.1", "loss.cycle_tau=0.1"]) == base
    changed = loss_terms(BASE + ["loss.tau=0.1", "loss.cycle_tau=0.3"])
    assert changed["global"] == base["global"] and changed["pixel"] == base["pixel"]
    assert changed["cycle"] != pytest.approx(base["cycle"], rel=1e-4)


def regions(x):
    """2x2 cells -> one region, as unit vectors (what loss.cycle_pool=2 feeds the cycle)."""
    return torch.nn.functional.normalize(torch.nn.functional.avg_pool2d(x, 2), dim=1)


@pytest.mark.parametrize("soft", ["true", "false"])
def test_pooled_cycle_is_the_cycle_loss_on_region_maps_and_enqueues_regions(soft):
    model = small_model(
        "loss.cycle_pool=2",
        "loss.cycle_return=self",
        "model.pixel_shuffle=off",
        "moco.shuffle_bn_groups=1",
        f"loss.soft_cycle={soft}",
    )
    v, v_plus = frames()
    queue_before = model.queues["cycle"].features.clone()
    out = model(v, v_plus)
    with torch.no_grad():  # the keys again, from the momentum encoder the step updated
        q, k = model.online(v), model.momentum_encoder(v_plus)
    target = None
    if soft == "true":
        target = losses.soft_cycle_target(regions(q["global"]), regions(k["global"]), 0.07)
    expected = losses.cycle_loss(
        regions(q["cycle"]), regions(k["cycle"]), queue_before, 0.07, target
    )
    torch.testing.assert_close(out.terms["cycle"], expected, rtol=1e-4, atol=1e-5)
    # The queue's new negatives are regions of the keys, not single cells.
    queued = model.queues["cycle"].features[:8]  # 4 images x 2 pixels_per_image
    candidates = losses.flat_pixels(regions(k["cycle"])).reshape(-1, queued.shape[1])
    assert (queued @ candidates.T).amax(dim=1).min() > 1 - 1e-4


def test_own_soft_target_is_the_landing_views_affinities_and_needs_no_global_head():
    model = small_model(
        "loss.soft_cycle=true", "loss.soft_target_head=cycle", "loss.soft_target_tau=0.05"
    )
    c = torch.nn.functional.normalize(torch.randn(2, 8, 3, 3), dim=1)
    back = torch.nn.functional.normalize(torch.randn(2, 8, 3, 3), dim=1)
    flat = back.flatten(2).transpose(1, 2)  # B x HW x D
    expected = torch.softmax(flat @ flat.transpose(1, 2) / 0.05, dim=2)
    torch.testing.assert_close(model.heads["cycle"].target({"cycle": c}, {}, back), expected)
    # Without a landing view (the paper's return) the target is c's own affinities.
    own = c.flatten(2).transpose(1, 2)
    expected = torch.softmax(own @ own.transpose(1, 2) / 0.05, 2)
    torch.testing.assert_close(model.heads["cycle"].target({"cycle": c}, {}), expected)
    alone = small_model(
        "heads.global=false",
        "loss.pixel_positive=position",
        "loss.soft_cycle=true",
        "loss.soft_target_head=cycle",
    )
    assert torch.isfinite(alone(*frames()).terms["cycle"])
    with pytest.raises(CaclError, match="loss.soft_target_head=cycle"):
        small_model("heads.global=false", "loss.pixel_positive=position", "loss.soft_cycle=true")

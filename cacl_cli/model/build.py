"""The CACL model a resolved config describes, and the rules its heads set between keys."""

from __future__ import annotations

from cacl_cli.errors import CaclError
from cacl_cli.model.cacl import CACL, Encoder
from cacl_cli.model.heads import HEADS


def model_from_config(cfg) -> CACL:
    """CACL with the backbone of ``cfg.model`` and the heads ``cfg.heads`` turns on."""
    heads = [HEADS[name].from_config(cfg) for name in cfg.heads.on()]
    return CACL(cfg.model, cfg.moco, heads, symmetric=cfg.loss.symmetric)


def encoder_from_config(cfg, heads: tuple[str, ...] | None = None) -> Encoder:
    """The online encoder alone: what a checkpoint's ``online.*`` tensors load into. ``heads``
    default to the ones ``cfg`` turns on."""
    names = cfg.heads.on() if heads is None else heads
    return Encoder(cfg.model, [HEADS[name].from_config(cfg) for name in names])


def check_heads(cfg, ranks: int = 1) -> None:
    """Refuse a pretrain config its heads cannot train on (``CaclError`` naming the keys);
    ``ranks`` torchrun processes each add their keys to the queues."""
    on = cfg.heads.on()
    if not on:
        raise CaclError("keys 'heads.*' are all false; turn on at least one head")
    for name in on:
        HEADS[name].check(cfg, ranks)


def compile_encoders(model: CACL) -> CACL:
    """``torch.compile`` the online and momentum encoders in place (``run.compile``): the
    convolutions, batch norms and heads fuse into fewer kernels; the losses, queues and rolls stay
    eager. The state dict and checkpoints do not change."""
    model.online.compile()
    model.momentum_encoder.compile()
    return model

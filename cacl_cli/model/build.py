"""The CACL model a resolved config describes (the rules between its keys: ``config.check_run``)."""

from __future__ import annotations

from cacl_cli.config import HeadsSection, LossSection, MocoSection, ModelSection
from cacl_cli.model.cacl import CACL


def build_model(
    model: ModelSection, heads: HeadsSection, loss: LossSection, moco: MocoSection
) -> CACL:
    """CACL with the backbone of ``model``, the heads turned on, and their losses and queues."""
    on = heads.on()
    return CACL(
        arch=model.arch,
        width=model.width,
        dim=model.dim,
        heads=on,
        weights={h: loss.weight(h) for h in on},
        queue_size=moco.queue_size,
        cycle_queue_size=moco.cycle_queue_size,
        momentum=moco.momentum,
        tau=loss.tau,
        soft_cycle=loss.soft_cycle,
        soft_target_tau=loss.soft_target_tau,
        soft_target_head=loss.soft_target_head,
        cycle_target_sigma=loss.cycle_target_sigma,
        pixel_positive=loss.pixel_positive,
        pixel_shuffle=model.pixel_shuffle,
        dense_stage=model.dense_stage,
        dense_neck=model.dense_neck,
        shuffle_bn_groups=moco.shuffle_bn_groups,
        batch_shuffle=moco.batch_shuffle,
        online_bn_groups=model.bn_groups,
        cycle_memory_mb=loss.cycle_memory_mb,
        pixels_per_image=moco.pixels_per_image,
        symmetric=loss.symmetric,
        cycle_return=loss.cycle_return,
        pixel_image_negatives=loss.pixel_negatives == "queue_and_image",
        queue_matmul=loss.queue_matmul,
        cycle_tau=loss.cycle_tau,
        cycle_pool=loss.cycle_pool,
    )


def model_from_config(cfg) -> CACL:
    """``build_model`` on the sections of a whole :class:`cacl_cli.config.Config`."""
    return build_model(cfg.model, cfg.heads, cfg.loss, cfg.moco)


def compile_encoders(model: CACL) -> CACL:
    """``torch.compile`` the online and momentum encoders in place (``run.compile``): the
    convolutions, batch norms and heads fuse into fewer kernels; the losses, queues and rolls stay
    eager. The state dict and checkpoints do not change."""
    model.online.compile()
    model.momentum_encoder.compile()
    return model

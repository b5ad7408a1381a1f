"""LARS and the learning-rate schedule of the paper's pretraining.

LARS (You et al. 2017) scales each weight's update by trust * ||w|| / ||g + wd w||; biases and
normalisation parameters are excluded from both that scaling and weight decay, as usual. The
schedule (linear warm-up, then cosine to zero) is a function of the step index alone
(``lr_at``), so resuming needs nothing else; probe and finetune use it with no warm-up.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios; groups with ``lars=False`` are plain SGD."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust: float = 0.001,
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust, lars=True),
        )

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's signature
        # One fused (foreach) operation over all of a group's tensors at a time, not a Python
        # loop over parameters.
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            updates = [p.grad for p in params]
            if group["lars"]:
                updates = torch._foreach_add(updates, params, alpha=group["weight_decay"])
                w_norm = torch.stack(torch._foreach_norm(params))
                u_norm = torch.stack(torch._foreach_norm(updates))
                ratio = torch.where(
                    (w_norm > 0) & (u_norm > 0), group["trust"] * w_norm / u_norm, 1.0
                )
                torch._foreach_mul_(updates, list(ratio.unbind()))
            buffers = self._momentum_buffers(params, updates, group["momentum"])
            torch._foreach_add_(params, buffers, alpha=-group["lr"])

    def _momentum_buffers(self, params, updates, momentum: float) -> list[torch.Tensor]:
        """buf <- momentum * buf + update; a parameter's first update starts its buffer."""
        states = [self.state[p] for p in params]
        started = ["momentum_buffer" in s for s in states]
        running = [(s["momentum_buffer"], u) for s, u, on in zip(states, updates, started) if on]
        if running:
            buffers, their_updates = map(list, zip(*running))
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, their_updates)
        for state, update, on in zip(states, updates, started):
            if not on:
                state["momentum_buffer"] = torch.clone(update).detach()
        return [s["momentum_buffer"] for s in states]


def lars_param_groups(model: nn.Module) -> list[dict]:
    """Weights get LARS and decay; biases and norm parameters (1-d tensors) get neither."""
    adapted, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (plain if p.ndim <= 1 else adapted).append(p)
    return [{"params": adapted}, {"params": plain, "lars": False, "weight_decay": 0.0}]


def scaled_lr(base_lr: float, reference_batch: int, global_batch: int) -> float:
    """Linear scaling: base_lr is right for reference_batch images per step."""
    return base_lr * global_batch / reference_batch


def lr_at(step: int, peak: float, steps: int, warmup_steps: int) -> float:
    """The learning rate of ``step`` (0-based): linear warm-up to ``peak``, then cosine decay
    to zero. Computed per step, so a run of a billion steps needs no table of them."""
    warmup = min(warmup_steps, steps)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

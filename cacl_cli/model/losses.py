"""The three CACL losses as pure functions on l2-normalised features.

Shapes: ``B`` images, ``D`` channels, ``H x W`` = ``HW`` positions, ``Q`` queue entries, ``N`` rows.
Every loss computes its logits in float32 (float64 for the cycle's second jump product), with
autocast switched off inside, whatever the dtype of the features.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint


def float32_logits(fn):
    """Run ``fn`` with autocast off: bf16 logits over thousands of negatives lose the positive."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def flat_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B, HW, D), float32."""
    return x.flatten(2).transpose(1, 2).float()


@float32_logits
def contrast_logits(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float
) -> torch.Tensor:
    """[q.k, q.queue^T] / tau: (N, D), (N, D), (Q, D) -> (N, 1 + Q); the positive is column 0."""
    q, k, queue = q.float(), k.float(), queue.float()
    l_pos = (q * k).sum(dim=1, keepdim=True)  # N x 1
    l_neg = q @ queue.t()  # N x Q
    return torch.cat([l_pos, l_neg], dim=1) / tau


@float32_logits
def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (1)/(3): mean over n of -log exp(q_n.k_n/tau) / sum_{z in {k_n} u queue} exp(q_n.z/tau).

    Args: q (N, D) online, k (N, D) momentum positives, queue (Q, D) negatives; all unit vectors.
    """
    # Cross-entropy with the positive in column 0, without building the (N, 1 + Q) matrix:
    # -l_pos + log(exp(l_pos) + sum exp(l_neg)). 1/tau scales q (N x D), not the logits (N x Q).
    q = q.float() / tau
    l_pos = (q * k.float()).sum(dim=1)  # N
    l_neg = q @ queue.float().t()  # N x Q
    return (torch.logaddexp(l_pos, l_neg.logsumexp(dim=1)) - l_pos).mean()


@float32_logits
def match_pixels(u: torch.Tensor, u_plus: torch.Tensor) -> torch.Tensor:
    """Eq. (4)'s matching: j*(i) = argmax_j cos(u^i, u_+^j) within each image.

    Args: u, u_plus (B, D, H, W) unit vectors. Returns (B, HW) indices into v+'s positions.
    """
    with torch.no_grad():
        affinity = flat_pixels(u) @ flat_pixels(u_plus).transpose(1, 2)  # B x HW x HW
        return affinity.argmax(dim=2)


def pixel_positives(u: torch.Tensor, u_plus: torch.Tensor, rule: str) -> torch.Tensor:
    """Where each pixel of v finds its positive in v+, (B, HW) indices.

    ``global``: eq. (4)'s argmax over the global head's dense features u, u_plus. ``position``:
    the same (un-rolled) cell, as in the paper's pixel-head-only ablation.
    """
    if rule == "global":
        return match_pixels(u, u_plus)
    b, _, h, w = u_plus.shape
    return torch.arange(h * w, device=u_plus.device).expand(b, -1)


def gather_pixels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick positions ``index`` (B, N) from each image of x (B, D, H, W) -> (B, N, D)."""
    flat = flat_pixels(x)
    return torch.gather(flat, 1, index.unsqueeze(2).expand(-1, -1, flat.shape[2]))


@float32_logits
def pixel_info_nce(
    p: torch.Tensor,
    p_plus: torch.Tensor,
    match: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    image_negatives: bool = False,
) -> torch.Tensor:
    """InfoNCE over every pixel of p with positive p_plus at ``match`` (B, HW) and the queue.

    ``image_negatives`` adds the cells of p_plus's own image as negatives, except the 3 x 3
    block around the positive (where the true point may lie when it has moved a cell).
    """
    if not image_negatives:
        q = flat_pixels(p).reshape(-1, p.shape[1])  # BHW x D
        k = gather_pixels(p_plus, match).reshape(-1, p.shape[1])  # BHW x D
        return info_nce(q, k, queue, tau)
    q = flat_pixels(p) / tau  # B x HW x D
    k = gather_pixels(p_plus, match)
    l_pos = (q * k).sum(dim=2)  # B x HW
    l_image = q @ flat_pixels(p_plus).transpose(1, 2)  # B x HW x HW
    width = p.shape[3]
    cells = torch.arange(l_image.shape[2], device=p.device)
    rows = (cells[None, None] // width - match[..., None] // width).abs()
    cols = (cells[None, None] % width - match[..., None] % width).abs()
    l_image = l_image.masked_fill(torch.maximum(rows, cols) <= 1, float("-inf"))
    l_queue = q @ queue.float().t()  # B x HW x Q
    negatives = torch.logaddexp(l_image.logsumexp(dim=2), l_queue.logsumexp(dim=2))
    return (torch.logaddexp(l_pos, negatives) - l_pos).mean()


def pixel_contrast_loss(
    p: torch.Tensor,
    p_plus: torch.Tensor,
    u: torch.Tensor,
    u_plus: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Eq. (4): L_P, mean over all B*HW pixels of p.

    The positive of pixel i of p is p_+ at j* = argmax_j cos(u^i, u_+^j) (no gradient through the
    matching); the negatives are the queue. p, u (B, D, H, W) online on v; p_plus, u_plus momentum
    on v+; queue (Q, D).
    """
    return pixel_info_nce(p, p_plus, match_pixels(u, u_plus), queue, tau)


def log_matmul_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) @ exp(b)) for batched (B, N, K) and (B, K, M), without under- or overflow.

    Each factor is shifted by its own maximum (rows of a, columns of b), so each product has a term
    no smaller than exp(-range); float64 keeps exp(-700) representable, which covers tau >= 0.003.
    """
    a, b = a.double(), b.double()
    shift_a = a.amax(dim=2, keepdim=True).detach()  # B x N x 1
    shift_b = b.amax(dim=1, keepdim=True).detach()  # B x 1 x M
    return torch.log(torch.exp(a - shift_a) @ torch.exp(b - shift_b)) + shift_a + shift_b


def _queue_logsumexp(
    c_plus: torch.Tensor, queue: torch.Tensor, tau: float, chunk_rows: int
) -> torch.Tensor:
    """logsumexp over the queue of c_+^j . z / tau, per row j: (B, HW, D) -> (B, HW, 1).

    With ``chunk_rows`` the (B, rows, Q) logits exist one chunk at a time, in the backward pass
    too (each chunk is recomputed there), and the result is the same.
    """

    def rows_lse(rows: torch.Tensor) -> torch.Tensor:
        return (rows @ (queue.t() / tau)).logsumexp(dim=2, keepdim=True)

    if chunk_rows <= 0 or chunk_rows >= c_plus.shape[1]:
        return rows_lse(c_plus)
    parts = c_plus.split(chunk_rows, dim=1)
    return torch.cat([checkpoint(rows_lse, part, use_reentrant=False) for part in parts], dim=1)


@float32_logits
def cycle_log_jumps(
    c: torch.Tensor,
    c_plus: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    chunk_rows: int = 0,
    c_back: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two jumps of eq. (5) with negatives, as log-probabilities.

    Returns log P1 (B, HW, HW): v -> v+; the second jump v+ -> [v ; queue] on its columns on v,
    log P2_self (B, HW, HW); and that jump's log normaliser (B, HW, 1), which gives its queue
    columns as c_+ queue^T / tau minus it. ``c_back`` (B, D, H, W), default c: the features of v
    that the second jump lands on.
    """
    c_back = flat_pixels(c if c_back is None else c_back)
    c, c_plus, queue = flat_pixels(c), flat_pixels(c_plus), queue.float()  # B x HW x D
    log_p1 = torch.log_softmax((c / tau) @ c_plus.transpose(1, 2), dim=2)
    back_self = (c_plus / tau) @ c_back.transpose(1, 2)  # B x HW x HW
    norm = torch.logaddexp(
        back_self.logsumexp(dim=2, keepdim=True), _queue_logsumexp(c_plus, queue, tau, chunk_rows)
    )
    return log_p1, back_self - norm, norm


@float32_logits
def cycle_loss(
    c: torch.Tensor,
    c_plus: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    target: torch.Tensor | None = None,
    chunk_rows: int = 0,
    c_back: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eqs. (5)-(6): L_C on the cycle v -> v+ -> [v ; queue].

    Per image M = softmax(c c_+^T / tau) @ softmax(c_+ [c ; queue]^T / tau), (HW, HW + Q), rows
    summing to 1. With ``target`` None (hard cycle) the loss is -mean_i log M[i, i]. With a target
    T (B, HW, HW), rows summing to 1 and zero on the queue columns (soft cycle), it is the mean over
    rows of KL(T_i || M_i) = sum_j T_ij (log T_ij - log M_ij). Computed in log space throughout.
    c, c_plus (B, D, H, W) unit vectors; queue (Q, D). ``chunk_rows``: see ``_queue_logsumexp``.
    ``c_back``: v's features for the return (default c; see ``CACL``'s ``cycle_return``).
    """
    log_p1, log_p2_self, _ = cycle_log_jumps(c, c_plus, queue, tau, chunk_rows, c_back)
    if target is None:
        # log M[i, i] = logsumexp_j (log P1[i, j] + log P2[j, i])
        log_m_diag = (log_p1 + log_p2_self.transpose(1, 2)).logsumexp(dim=2)  # B x HW
        return -log_m_diag.mean()
    log_m = log_matmul_exp(log_p1, log_p2_self)  # B x HW x HW, columns on v only
    target = target.double()
    kl = (torch.special.xlogy(target, target) - target * log_m).sum(dim=2)  # B x HW
    return kl.mean().float()


@float32_logits
def soft_cycle_target(u: torch.Tensor, u_plus: torch.Tensor, tau: float) -> torch.Tensor:
    """The soft cycle's target: row-softmax of <u^i, u_+^j> / tau, (B, HW, HW), no gradient.

    v and v+ are crops at the same position, so column j (a position of v+) stands for position j
    of v: the target says which pixels of v pixel i may rightly cycle back to.
    """
    with torch.no_grad():
        return torch.softmax(flat_pixels(u) @ flat_pixels(u_plus).transpose(1, 2) / tau, dim=2)


@torch.no_grad()
@float32_logits
def cycle_back_rate(
    c: torch.Tensor, c_plus: torch.Tensor, queue: torch.Tensor, tau: float
) -> torch.Tensor:
    """Share of pixels i whose most likely return, argmax over all HW + Q columns of M[i], is i."""
    log_p1, log_p2_self, norm = cycle_log_jumps(c, c_plus, queue, tau)
    log_p2_queue = flat_pixels(c_plus) @ queue.float().t() / tau - norm  # B x HW x Q
    p1 = log_p1.exp()
    m = torch.cat([p1 @ log_p2_self.exp(), p1 @ log_p2_queue.exp()], dim=2)  # B x HW x (HW+Q)
    positions = torch.arange(m.shape[1], device=m.device)
    return (m.argmax(dim=2) == positions).float().mean()

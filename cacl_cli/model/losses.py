"""The three CACL losses as pure functions on l2-normalised features.

Shapes: ``B`` images, ``D`` channels, ``H x W`` = ``HW`` positions, ``Q`` queue entries, ``N`` rows.
Every loss computes its logits in float32 (float64 for the cycle's second jump product), with
autocast switched off inside, whatever the dtype of the features. The one exception is asked for
by name: ``matmul_dtype`` bfloat16 for the products with a queue (``QueueLogSumExp``), whose sums
stay float32.
"""

from __future__ import annotations

import functools
import math

import torch


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


class QueueLogSumExp(torch.autograd.Function):
    """log sum_z exp(q_n . z / tau) over the rows z of a queue, for every row q_n: (N, D) -> (N,).

    Autograd would keep the N x Q logits and an exp of them, and walk them several times. Here
    each block of ``block_rows`` rows is one matrix product, one in-place exp and one sum.
    ``keep`` stores those exps for the backward pass; otherwise nothing of size N x Q is kept and
    the backward pass recomputes each block (one more matrix product, far less memory). The queue
    gets no gradient: it holds momentum keys.

    The product subtracts a shift c_n from row n itself, as one more column:
    [q_n, c_n] . [z / tau, -1] = logit - c_n, with c_n the row's largest logit over a sample of
    64 queue rows (float32). The exps then stay in float range without a pass that looks for
    each row's maximum, and in ``dtype`` bfloat16 (several times faster where the hardware has
    bf16 matrix units) the logits that carry a row's sum come out near 0, where bfloat16 is
    fine-grained. Sums and the result are float32.
    """

    @staticmethod
    def forward(ctx, q, queue, tau, block_rows, keep, dtype):
        n, size = q.shape[0], queue.shape[0]
        sample = queue[:: max(1, size // SHIFT_SAMPLE)]
        shift = ((q @ sample.t()).amax(dim=1, keepdim=True) / tau).to(dtype).float()  # c_n
        q_aug = torch.cat([q, shift], dim=1).to(dtype)
        scaled = torch.cat([queue / tau, -queue.new_ones(size, 1)], dim=1).t().to(dtype)
        # |logit - c_n| <= 2 |q| max|z| / tau; below 80 - log Q no exp and no sum of Q exps
        # leaves float32's normal range (unit vectors at tau 0.07: 28.6). Past it (tiny tau)
        # each row's maximum is subtracted as well.
        bound = 2 * q.norm(dim=1).max() * queue.norm(dim=1).max() / tau
        exact = bool(bound >= 80 - math.log(size))
        lse, totals = q.new_empty(n), q.new_empty(n, 1)
        exps = q.new_empty(n, size, dtype=dtype) if keep else None
        for rows in _blocks(n, block_rows):
            p = torch.mm(q_aug[rows], scaled, out=None if exps is None else exps[rows])
            top = shift[rows]
            if exact:
                row_max = p.amax(dim=1, keepdim=True)
                p.sub_(row_max)
                top = top + row_max.float()
            totals[rows] = p.exp_().sum(dim=1, keepdim=True, dtype=torch.float32)
            lse[rows] = (totals[rows].log() + top).squeeze(1)
        ctx.save_for_backward(q_aug, scaled, lse[:, None] - shift, totals, exps)
        ctx.block_rows = block_rows
        return lse

    @staticmethod
    def backward(ctx, grad_lse):
        q_aug, scaled, lse_shifted, totals, exps = ctx.saved_tensors
        over_tau = scaled[:-1].t()  # Q x D: the queue over tau
        grad_q = grad_lse.new_empty(q_aug.shape[0], q_aug.shape[1] - 1)
        for rows in _blocks(q_aug.shape[0], ctx.block_rows):
            # d lse_n / d q_n = sum_z softmax_nz z / tau; the softmax's row sum is applied to
            # the N x D product, not to the N x Q exps
            if exps is not None:
                p, weight = exps[rows], grad_lse[rows, None] / totals[rows]
            else:
                p = (q_aug[rows] @ scaled).float().sub_(lse_shifted[rows]).exp_()
                p, weight = p.to(scaled.dtype), grad_lse[rows, None]
            grad_q[rows] = (p @ over_tau).float().mul_(weight)
        return grad_q, None, None, None, None, None


SHIFT_SAMPLE = 64  # queue rows whose logits set each row's shift


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def queue_logsumexp(
    q: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    memory_rows: int = 0,
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """log sum_z exp(q . z / tau) over the queue's rows, per row of q: (..., D) -> (...,), float32.

    ``memory_rows`` > 0 bounds the rows whose queue logits exist at once, in the backward pass too
    (recomputed there); 0 computes all rows in one block and keeps their exps, the fastest way
    where memory allows (on the development CPU one block of 2048 x 4096 logits took 37 ms forward
    and backward, blocks of 64 rows 50 ms). ``matmul_dtype``: see ``QueueLogSumExp``.
    """
    flat = q.reshape(-1, q.shape[-1]).float()
    block, keep = (memory_rows, False) if memory_rows > 0 else (max(1, flat.shape[0]), True)
    lse = QueueLogSumExp.apply(flat.contiguous(), queue.float(), tau, block, keep, matmul_dtype)
    return lse.view(q.shape[:-1])


@float32_logits
def info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Eq. (1)/(3): mean over n of -log exp(q_n.k_n/tau) / sum_{z in {k_n} u queue} exp(q_n.z/tau).

    Args: q (N, D) online, k (N, D) momentum positives, queue (Q, D) negatives; all unit vectors.
    ``matmul_dtype``: of the products with the queue (``QueueLogSumExp``); the positive's logit
    is always float32.
    """
    # Cross-entropy with the positive in column 0, without building the (N, 1 + Q) matrix:
    # -l_pos + log(exp(l_pos) + sum exp(l_neg)).
    q = q.float()
    l_pos = (q * k.float()).sum(dim=1) / tau  # N
    negatives = queue_logsumexp(q, queue, tau, matmul_dtype=matmul_dtype)
    return (torch.logaddexp(l_pos, negatives) - l_pos).mean()


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
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """InfoNCE over every pixel of p with positive p_plus at ``match`` (B, HW) and the queue.

    ``image_negatives`` adds the cells of p_plus's own image as negatives, except the 3 x 3
    block around the positive (where the true point may lie when it has moved a cell).
    ``matmul_dtype``: see ``info_nce``.
    """
    if not image_negatives:
        q = flat_pixels(p).reshape(-1, p.shape[1])  # BHW x D
        k = gather_pixels(p_plus, match).reshape(-1, p.shape[1])  # BHW x D
        return info_nce(q, k, queue, tau, matmul_dtype)
    q = flat_pixels(p)  # B x HW x D
    k = gather_pixels(p_plus, match)
    l_pos = (q * k).sum(dim=2) / tau  # B x HW
    l_image = (q / tau) @ flat_pixels(p_plus).transpose(1, 2)  # B x HW x HW
    width = p.shape[3]
    cells = torch.arange(l_image.shape[2], device=p.device)
    rows = (cells[None, None] // width - match[..., None] // width).abs()
    cols = (cells[None, None] % width - match[..., None] % width).abs()
    l_image = l_image.masked_fill(torch.maximum(rows, cols) <= 1, float("-inf"))
    in_queue = queue_logsumexp(q, queue, tau, matmul_dtype=matmul_dtype)
    negatives = torch.logaddexp(l_image.logsumexp(dim=2), in_queue)
    return (torch.logaddexp(l_pos, negatives) - l_pos).mean()


def log_matmul_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) @ exp(b)) for batched (B, N, K) and (B, K, M), without under- or overflow.

    Each factor is shifted by its own maximum (rows of a, columns of b), so each product has a term
    no smaller than exp(-range); float64 keeps exp(-700) representable, which covers tau >= 0.003.
    """
    a, b = a.double(), b.double()
    shift_a = a.amax(dim=2, keepdim=True).detach()  # B x N x 1
    shift_b = b.amax(dim=1, keepdim=True).detach()  # B x 1 x M
    return torch.log(torch.exp(a - shift_a) @ torch.exp(b - shift_b)) + shift_a + shift_b


@float32_logits
def cycle_log_jumps(
    c: torch.Tensor,
    c_plus: torch.Tensor,
    queue: torch.Tensor,
    tau: float,
    chunk_rows: int = 0,
    c_back: torch.Tensor | None = None,
    matmul_dtype: torch.dtype = torch.float32,
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
        back_self.logsumexp(dim=2, keepdim=True),
        queue_logsumexp(c_plus, queue, tau, chunk_rows, matmul_dtype).unsqueeze(2),
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
    matmul_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Eqs. (5)-(6): L_C on the cycle v -> v+ -> [v ; queue].

    Per image M = softmax(c c_+^T / tau) @ softmax(c_+ [c ; queue]^T / tau), (HW, HW + Q), rows
    summing to 1. With ``target`` None (hard cycle) the loss is -mean_i log M[i, i]. With a target
    T (B, HW, HW), rows summing to 1 and zero on the queue columns (soft cycle), it is the mean over
    rows of KL(T_i || M_i) = sum_j T_ij (log T_ij - log M_ij). Computed in log space throughout.
    c, c_plus (B, D, H, W) unit vectors; queue (Q, D). ``chunk_rows``: see ``queue_logsumexp``'s
    ``memory_rows``.
    ``c_back``: v's features for the return (default c; see ``CACL``'s ``cycle_return``).
    ``matmul_dtype``: of the second jump's products with the queue (``QueueLogSumExp``).
    """
    log_p1, log_p2_self, _ = cycle_log_jumps(
        c, c_plus, queue, tau, chunk_rows, c_back, matmul_dtype
    )
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


def neighbourhood_target(height: int, width: int, sigma: float, device=None) -> torch.Tensor:
    """A cycle target that accepts a return near the start: row i is a Gaussian of ``sigma``
    cells around position i of the H x W grid, summing to 1, (HW, HW). The identity target of
    eq. 6 asks a pixel to come back to itself and not to its neighbour, which pays features for
    telling neighbouring cells of one surface apart."""
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    cells = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    squared = torch.cdist(cells, cells).pow(2)
    return torch.softmax(-squared / (2 * sigma**2), dim=1)


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

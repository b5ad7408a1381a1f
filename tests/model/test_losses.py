"""The public losses against straightforward float64 computations, and their limit cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from cacl_cli.model.losses import (
    cycle_back_rate,
    cycle_loss,
    info_nce,
    match_pixels,
    pixel_info_nce,
    queue_logsumexp,
    soft_cycle_target,
)


def unit(*shape, dim=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=dim)


def ref_info_nce(q, k, queue, tau):
    total = 0.0
    for n in range(len(q)):
        pos = math.exp(float(q[n].double() @ k[n].double()) / tau)
        neg = sum(math.exp(float(q[n].double() @ z.double()) / tau) for z in queue)
        total += -math.log(pos / (pos + neg))
    return total / len(q)


def flat(x):  # B x D x H x W -> B x HW x D, float64
    return x.flatten(2).transpose(1, 2).double()


def ref_cycle(c, c_plus, queue, tau, target=None):
    losses = []
    for b in range(c.shape[0]):
        cb, cpb = flat(c)[b], flat(c_plus)[b]
        first = torch.softmax(cb @ cpb.T / tau, dim=1)
        second = torch.softmax(cpb @ torch.cat([cb, queue.double()]).T / tau, dim=1)
        m = first @ second  # HW x (HW + Q)
        hw = cb.shape[0]
        if target is None:
            losses.append(-torch.log(torch.diagonal(m[:, :hw])).mean())
        else:
            t = target[b].double()
            losses.append((torch.special.xlogy(t, t) - t * torch.log(m[:, :hw])).sum(1).mean())
    return float(torch.stack(losses).mean())


@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("n,q_size,d", [(4, 16, 8), (7, 33, 16)])
def test_info_nce_matches_loop(tau, n, q_size, d):
    q, k, queue = unit(n, d, seed=1), unit(n, d, seed=2), unit(q_size, d, seed=3)
    assert info_nce(q, k, queue, tau).item() == pytest.approx(
        ref_info_nce(q, k, queue, tau), rel=1e-4
    )


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_pixel_contrast_matches_loop(tau):
    b, d, h, w = 2, 8, 3, 4
    p, p_plus = unit(b, d, h, w, seed=1), unit(b, d, h, w, seed=2)
    u, u_plus = unit(b, d, h, w, seed=3), unit(b, d, h, w, seed=4)
    queue = unit(10, d, seed=5)
    qs, ks = [], []
    for img in range(b):
        for i in range(h * w):
            ui = flat(u)[img, i]
            j = int(torch.argmax(flat(u_plus)[img] @ ui))
            qs.append(flat(p)[img, i])
            ks.append(flat(p_plus)[img, j])
    ref = ref_info_nce(torch.stack(qs), torch.stack(ks), queue, tau)
    got = pixel_info_nce(p, p_plus, match_pixels(u, u_plus), queue, tau)
    assert got.item() == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("tau", [0.07, 0.3])
@pytest.mark.parametrize("soft", [False, True])
def test_cycle_loss_matches_float64_matrices(tau, soft):
    b, d, h, w = 2, 16, 3, 3
    c, c_plus, queue = unit(b, d, h, w, seed=1), unit(b, d, h, w, seed=2), unit(20, d, seed=3)
    target = (
        soft_cycle_target(unit(b, d, h, w, seed=4), unit(b, d, h, w, seed=5), tau) if soft else None
    )
    got = cycle_loss(c, c_plus, queue, tau, target).item()
    assert got == pytest.approx(ref_cycle(c, c_plus, queue, tau, target), rel=1e-4, abs=1e-6)


def test_soft_cycle_target_rows_are_softmax_of_affinities():
    u, u_plus = unit(2, 8, 2, 3, seed=1), unit(2, 8, 2, 3, seed=2)
    t = soft_cycle_target(u, u_plus, 0.1)
    assert t.shape == (2, 6, 6)
    torch.testing.assert_close(t.sum(2), torch.ones(2, 6))
    expected = torch.softmax(flat(u)[1, 4] @ flat(u_plus)[1].T / 0.1, dim=0)
    torch.testing.assert_close(t[1, 4].double(), expected, rtol=1e-5, atol=1e-7)


def test_identical_features_small_tau_stay_finite_with_finite_gradients():
    d, h, w = 8, 4, 4
    same = F.normalize(torch.ones(1, d, 1, 1), dim=1).expand(2, d, h, w).clone()
    c, c_plus = same.clone().requires_grad_(), same.clone().requires_grad_()
    queue = F.normalize(torch.ones(32, d), dim=1)
    target = soft_cycle_target(same, same, 0.01)
    for tgt in (None, target):
        loss = cycle_loss(c, c_plus, queue, 0.01, tgt)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(c.grad).all() and torch.isfinite(c_plus.grad).all()
    # Every column is equally likely: the hard loss is log(HW + Q) ... up to the HW/(HW+Q) share.
    hard = cycle_loss(same, same, queue, 0.01).item()
    assert hard == pytest.approx(math.log(h * w + 32), rel=1e-4)


def test_log_space_survives_where_float32_products_underflow():
    # Distinct one-hot features with tau = 0.005: jumps are near one-hot, M's off-diagonal entries
    # are ~exp(-200), which a float32 product flushes to zero (log 0 = -inf).
    d = hw = 9
    eye = torch.eye(d).T.reshape(1, d, 3, 3)
    c_plus = torch.roll(eye, shifts=1, dims=2).clone()  # every pixel jumps to a different place
    c = eye.clone().requires_grad_()
    queue = F.normalize(torch.randn(16, d), dim=1)
    uniform = torch.full((1, hw, hw), 1.0 / hw)
    tau = 0.005
    c32, cp32 = flat(c.detach()).float()[0], flat(c_plus).float()[0]
    naive = torch.softmax(c32 @ cp32.T / tau, 1) @ torch.softmax(
        cp32 @ torch.cat([c32, queue]).T / tau, 1
    )
    assert (naive[:, :hw] == 0).any()  # the naive product does underflow
    loss = cycle_loss(c, c_plus, queue, tau, uniform)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(c.grad).all()
    assert loss.item() == pytest.approx(
        ref_cycle(c.detach(), c_plus, queue, tau, uniform), rel=1e-6
    )


def test_constant_target_is_kl_from_uniform():
    b, d, h, w = 1, 8, 2, 2
    c, c_plus, queue = unit(b, d, h, w, seed=1), unit(b, d, h, w, seed=2), unit(5, d, seed=3)
    uniform = torch.full((b, h * w, h * w), 1.0 / (h * w))
    got = cycle_loss(c, c_plus, queue, 0.1, uniform).item()
    assert got == pytest.approx(ref_cycle(c, c_plus, queue, 0.1, uniform), rel=1e-5)
    assert got > 0


def test_queue_of_zeros_counts_as_logit_zero_negatives():
    b, d, h, w = 1, 8, 2, 2
    c, c_plus = unit(b, d, h, w, seed=1), unit(b, d, h, w, seed=2)
    zeros = torch.zeros(6, d)
    got = cycle_loss(c, c_plus, zeros, 0.2).item()
    assert got == pytest.approx(ref_cycle(c, c_plus, zeros, 0.2), rel=1e-5)
    q, k = unit(3, d, seed=4), unit(3, d, seed=5)
    assert info_nce(q, k, zeros, 0.2).item() == pytest.approx(
        ref_info_nce(q, k, zeros, 0.2), rel=1e-5
    )


def test_all_losses_have_finite_gradients():
    b, d, h, w = 2, 8, 3, 3
    tensors = [unit(b, d, h, w, seed=s).requires_grad_() for s in range(4)]
    p, p_plus, u, u_plus = tensors
    queue = unit(12, d, seed=9)
    total = (
        pixel_info_nce(p, p_plus, match_pixels(u, u_plus), queue, 0.07)
        + cycle_loss(p, p_plus, queue, 0.07, soft_cycle_target(u, u_plus, 0.07))
        + info_nce(u.mean((2, 3)), u_plus.mean((2, 3)), queue, 0.07)
    )
    total.backward()
    assert all(torch.isfinite(t.grad).all() for t in (p, p_plus, u))


def test_cycle_back_rate_is_one_for_a_perfect_cycle_and_low_for_a_scrambled_one():
    d = 16
    eye = torch.eye(d)[:, :9].reshape(1, d, 3, 3)  # 9 orthogonal pixels
    queue = unit(32, d, seed=1)
    assert float(cycle_back_rate(eye, eye, queue, 0.05)) == 1.0
    same = F.normalize(torch.ones(1, d, 3, 3), dim=1)
    # all returns tie; argmax takes the first column, so only pixel 0 "cycles back"
    rate = float(cycle_back_rate(same, same, F.normalize(torch.ones(4, d), dim=1), 0.05))
    assert rate == pytest.approx(1 / 9)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("rows", [1, 3, 7])
def test_chunked_cycle_equals_the_whole_computation(soft, rows):
    b, d, h, w = 2, 16, 3, 4
    queue = unit(50, d, seed=3)
    target = soft_cycle_target(unit(b, d, h, w, seed=4), unit(b, d, h, w, seed=5), 0.1)
    results = []
    for chunk_rows in (0, rows):
        c = unit(b, d, h, w, seed=1).requires_grad_()
        c_plus = unit(b, d, h, w, seed=2).requires_grad_()
        loss = cycle_loss(c, c_plus, queue, 0.1, target if soft else None, chunk_rows=chunk_rows)
        loss.backward()
        results.append((loss.detach(), c.grad, c_plus.grad))
    (whole, *whole_grads), (chunked, *chunked_grads) = results
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
    for got, expected in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_logits_stay_float32_under_autocast():
    q, k, queue = unit(8, 32, seed=1), unit(8, 32, seed=2), unit(64, 32, seed=3)
    c, c_plus = unit(2, 32, 3, 3, seed=4), unit(2, 32, 3, 3, seed=5)
    exact = (info_nce(q, k, queue, 0.07), cycle_loss(c, c_plus, queue, 0.07))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.matmul(q, k.t()).dtype == torch.bfloat16  # autocast is really on
        mixed = (info_nce(q, k, queue, 0.07), cycle_loss(c, c_plus, queue, 0.07))
    for got, expected in zip(mixed, exact):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _padding_code(shift: tuple[int, int], side: int = 4) -> torch.Tensor:
    """A content-blind feature (1, side^2, side, side): at each (un-rolled) cell, a one-hot of
    the place that cell had in the input rolled by ``shift``, i.e. where the padding was."""
    cell = torch.arange(side * side).reshape(side, side)
    place = (cell + shift[0] * side + shift[1]) % (side * side)
    return torch.nn.functional.one_hot(place, side * side).permute(2, 0, 1).float().unsqueeze(0)


def test_a_padding_code_closes_the_paper_cycle_but_not_a_rerolled_return():
    c, c_plus = _padding_code((1, 2)), _padding_code((3, 0))
    queue = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    cheat = cycle_loss(c, c_plus, queue, tau=0.01)
    assert cheat < 0.01  # the round trip cancels any shift: the shortcut is free
    rerolled = cycle_loss(c, c_plus, queue, tau=0.01, c_back=_padding_code((2, 3)))
    assert rerolled > 5.0  # the return lands one roll away from where it started


def test_image_negatives_add_the_far_cells_of_the_same_image():
    torch.manual_seed(0)
    p = torch.nn.functional.normalize(torch.randn(2, 8, 4, 4), dim=1)
    p_plus = torch.nn.functional.normalize(torch.randn(2, 8, 4, 4), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    match = torch.arange(16).expand(2, -1)
    tau = 0.1
    got = pixel_info_nce(p, p_plus, match, queue, tau, image_negatives=True)
    # by hand: cell i's negatives are the queue and the cells of p_plus outside i's 3 x 3 block
    q = p.flatten(2).transpose(1, 2)
    k = p_plus.flatten(2).transpose(1, 2)
    total = 0.0
    for b in range(2):
        for i in range(16):
            far = [j for j in range(16) if max(abs(j // 4 - i // 4), abs(j % 4 - i % 4)) > 1]
            logits = (
                torch.cat([(q[b, i] @ k[b, i])[None], q[b, i] @ k[b, far].t(), q[b, i] @ queue.t()])
                / tau
            )
            total += -torch.log_softmax(logits, 0)[0]
    assert torch.allclose(got, total / 32, atol=1e-5)
    assert got > pixel_info_nce(p, p_plus, match, queue, tau)  # more negatives, higher loss


# The queue's log-sum-exp computes in blocks and keeps at most its exps; autograd is the
# reference.


def saved_sizes(fn):
    """Run fn() and return the element counts of every tensor autograd saved for backward."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sizes


@pytest.mark.parametrize("memory_rows", [0, 1, 7, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_queue_logsumexp_matches_autograd_in_value_and_gradient(memory_rows, dtype):
    q = unit(3, 10, 16, dim=2, seed=1).to(dtype).requires_grad_()  # 30 rows, none divides 64
    queue = unit(500, 16, seed=2).to(dtype)
    weights = torch.randn(3, 10, dtype=dtype)
    got = queue_logsumexp(q, queue, 0.07, memory_rows)
    (got * weights).sum().backward()
    q_ref = q.detach().double().requires_grad_()
    expected = (q_ref @ queue.double().t() / 0.07).logsumexp(dim=2)
    (expected * weights.double()).sum().backward()
    assert got.dtype == torch.float32 and got.shape == (3, 10)
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-6, atol=1e-5)
    tight = dtype == torch.float64  # float32 inputs round at 1e-7 relative, and so do their sums
    rtol, atol = (1e-5, 1e-6) if tight else (1e-4, 1e-5)
    torch.testing.assert_close(q.grad.double(), q_ref.grad, rtol=rtol, atol=atol)


def test_queue_logsumexp_recomputes_instead_of_keeping_the_logits_under_a_budget():
    q = unit(256, 32, seed=1).requires_grad_()
    queue = unit(1024, 32, seed=2)
    _, kept = saved_sizes(lambda: queue_logsumexp(q, queue, 0.1))
    _, budget = saved_sizes(lambda: queue_logsumexp(q, queue, 0.1, memory_rows=16))
    _, plain = saved_sizes(lambda: (q @ queue.t() / 0.1).logsumexp(dim=1))
    n_by_q = 256 * 1024
    assert max(plain) >= n_by_q  # autograd keeps the logits
    assert sum(s >= n_by_q for s in kept) == 1  # the softmax, once
    assert max(budget) < n_by_q  # nothing of size N x Q


def test_queue_logsumexp_survives_logits_far_beyond_float32_exp():
    q = unit(4, 8, seed=1).requires_grad_()
    lse = queue_logsumexp(q, q.detach().clone(), 0.001)  # logits up to 1000: exp overflows
    lse.sum().backward()
    assert torch.isfinite(lse).all() and torch.isfinite(q.grad).all()
    assert (lse >= 999.0).all()  # each row meets itself at cos 1


@pytest.mark.parametrize(
    "hard_negatives,grad_bound,pixel_bound", [(False, 5e-3, 1.5e-2), (True, 2e-2, 3e-2)]
)
def test_bfloat16_queue_products_stay_within_stated_bounds_of_float32(
    hard_negatives, grad_bound, pixel_bound
):
    """bf16 products (loss.queue_matmul) against float32: losses within 1e-3; gradients within
    0.5 % overall and 1.5 % at any pixel (measured: 0.14 %, 0.75 %), or 2 % and 3 % when the
    queue holds near-copies of the queries (cos 0.999), where bf16's rounding of the inputs
    shows (measured: 1.0 %, 1.8 %)."""
    p = unit(8, 64, 6, 6, seed=1)
    p_plus = F.normalize(p + 0.3 * unit(8, 64, 6, 6, seed=2), dim=1)
    queue = unit(2048, 64, seed=3)
    if hard_negatives:  # near-copies of some queries in the queue
        near = p.flatten(2).transpose(1, 2).reshape(-1, 64)[:256] + 0.05 * unit(256, 64, seed=4)
        queue[:256] = F.normalize(near, dim=1)
    match = torch.arange(36).expand(8, -1)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        for name, loss_fn in (
            ("pixel", lambda x: pixel_info_nce(x, p_plus, match, queue, 0.07, matmul_dtype=dtype)),
            ("cycle", lambda x: cycle_loss(x, p_plus, queue[:64], 0.07, matmul_dtype=dtype)),
        ):
            x = p.clone().requires_grad_()
            loss = loss_fn(x)
            loss.backward()
            results[name, dtype] = (loss.item(), x.grad)
    for name in ("pixel", "cycle"):
        (exact, g32), (low, g16) = results[name, torch.float32], results[name, torch.bfloat16]
        assert low == pytest.approx(exact, abs=1e-3)
        assert ((g16 - g32).norm() / g32.norm()).item() < grad_bound
        per_pixel = (g16 - g32).norm(dim=1) / g32.norm(dim=1)
        assert per_pixel.max().item() < pixel_bound
        assert not torch.equal(g16, g32)  # the bf16 path really ran


def test_neighbourhood_target_is_a_normalised_gaussian_around_each_cell():
    from cacl_cli.model.losses import neighbourhood_target

    target = neighbourhood_target(4, 5, 1.0)
    assert target.shape == (20, 20)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(20))
    assert torch.equal(target.argmax(dim=1), torch.arange(20))  # each cell's peak is itself
    centre = target[7].view(4, 5)  # cell (1, 2)
    assert centre[1, 1] == pytest.approx(centre[1, 3]) and centre[1, 1] > centre[0, 0]


def test_a_narrow_neighbourhood_target_is_the_identity_target():
    from cacl_cli.model.losses import neighbourhood_target

    c, c_plus = unit(2, 16, 3, 4, seed=1), unit(2, 16, 3, 4, seed=2)
    queue = unit(30, 16, seed=3)
    narrow = neighbourhood_target(3, 4, 0.05).expand(2, -1, -1)
    hard = cycle_loss(c, c_plus, queue, 0.1)
    assert float(cycle_loss(c, c_plus, queue, 0.1, narrow)) == pytest.approx(float(hard), rel=1e-5)
    wide = neighbourhood_target(3, 4, 1.0).expand(2, -1, -1)
    assert float(cycle_loss(c, c_plus, queue, 0.1, wide)) != pytest.approx(float(hard), rel=1e-2)

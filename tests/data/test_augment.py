"""Pair augmentation: one crop box and flip for both frames, colours drawn per frame."""

import numpy as np
import torch

from cacl_cli.config import section
from cacl_cli.data.augment import PairAugment

GEOMETRY_ONLY = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def ramp_image(h=60, w=80):
    """Each pixel encodes its own position, so a crop's content reveals the crop box."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 4, xx * 3, np.full_like(xx, 128)], axis=2).astype(np.uint8)


def test_both_frames_share_crop_box_and_flip():
    image = ramp_image()
    aug = PairAugment(section("augment", **GEOMETRY_ONLY), 32)
    for seed in range(20):
        a, b = aug(image, image.copy(), np.random.default_rng(seed))
        torch.testing.assert_close(a, b)  # same geometry, nothing photometric


def test_crops_differ_between_draws_and_have_the_output_size():
    image = ramp_image()
    aug = PairAugment(section("augment", **GEOMETRY_ONLY), 32)
    a1, _ = aug(image, image, np.random.default_rng(0))
    a2, _ = aug(image, image, np.random.default_rng(1))
    assert a1.shape == (3, 32, 32) and not torch.allclose(a1, a2)


def test_colours_are_drawn_per_frame():
    image = ramp_image()
    colour = section("augment", jitter_p=1.0, grayscale_p=0.0, blur_p=0.0, flip_p=0.0)
    jitter_only = PairAugment(colour, 32)
    a, b = jitter_only(image, image.copy(), np.random.default_rng(3))
    assert not torch.allclose(a, b)
    # with the colour draws switched off the same seed gives identical frames (shared geometry)
    plain = PairAugment(section("augment", **GEOMETRY_ONLY, flip_p=0.0), 32)
    a, b = plain(image, image.copy(), np.random.default_rng(3))
    torch.testing.assert_close(a, b)


def test_same_seed_same_output():
    image = ramp_image()
    aug = PairAugment(section("augment"), 24)
    a1, b1 = aug(image, image, np.random.default_rng(5))
    a2, b2 = aug(image, image, np.random.default_rng(5))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)


def test_batched_colour_ops_match_torchvision_per_image():
    from torchvision.transforms.v2 import functional as TF

    from cacl_cli.data import augment

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 20, 20, generator=g)
    factors = torch.tensor([0.6, 0.9, 1.0, 1.2, 1.4, 0.7])
    shifts = torch.tensor([-0.1, -0.03, 0.0, 0.02, 0.08, 0.1])
    cases = [
        (augment._brightness, TF.adjust_brightness, factors),
        (augment._contrast, TF.adjust_contrast, factors),
        (augment._saturation, TF.adjust_saturation, factors),
        (augment._hue, TF.adjust_hue, shifts),
    ]
    for batched, reference, values in cases:
        got = batched(x, values)
        for i, value in enumerate(values.tolist()):
            torch.testing.assert_close(got[i], reference(x[i], value), atol=2e-5, rtol=0)
    sigmas = torch.tensor([0.3, 0.8, 1.5, 2.0, 0.5, 1.0])
    blurred = augment._gaussian_blur(x, sigmas, radius=3)
    for i, sigma in enumerate(sigmas.tolist()):
        expected = TF.gaussian_blur(x[i], [7, 7], [sigma, sigma])
        torch.testing.assert_close(blurred[i], expected, atol=1e-5, rtol=0)


def test_a_batch_finished_at_once_equals_each_pair_finished_alone():
    image = ramp_image()
    aug = PairAugment(section("augment"), 24)
    prepared = [aug.prepare(image, image, np.random.default_rng(seed)) for seed in range(8)]
    frames, _, params, _ = (torch.stack(part) for part in zip(*prepared))
    batch = aug.finish(frames, params)
    for i in range(8):
        torch.testing.assert_close(batch[i], aug.finish(frames[i : i + 1], params[i : i + 1])[0])
    assert params[:, 9].any() and params[:, 10].any() and params[:, 0].any()  # all ops exercised

"""DAVIS scores on cases whose answer is known by construction, and multi-object propagation."""

import numpy as np
import pytest
import torch
from PIL import Image

from cacl_cli.config import section
from cacl_cli.evaluate import davis
from cacl_cli.evaluate.propagate import segment_sequence

H, W = 100, 120  # diagonal 156.2: the boundary tolerance is ceil(0.008 * 156.2) = 2 pixels
NO_VOID = np.zeros((H, W), bool)


def square(top=30, left=40, size=30):
    mask = np.zeros((H, W), bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_identical_masks_score_one():
    assert davis.region_similarity(square(), square(), NO_VOID) == 1.0
    assert davis.contour_accuracy(square(), square(), NO_VOID) == 1.0


def test_a_shift_within_the_tolerance_keeps_f_and_one_beyond_loses_it():
    within, beyond = square(left=42), square(left=45)  # 2 and 5 pixels to the right
    assert davis.contour_accuracy(within, square(), NO_VOID) == 1.0
    f_beyond = davis.contour_accuracy(beyond, square(), NO_VOID)
    assert 0.3 < f_beyond < 0.7  # the two horizontal edges still match, the vertical ones not
    assert davis.region_similarity(within, square(), NO_VOID) == pytest.approx(28 / 32)


def test_an_empty_prediction_scores_zero_and_empty_against_empty_one():
    empty = np.zeros((H, W), bool)
    assert davis.region_similarity(empty, square(), NO_VOID) == 0.0
    assert davis.contour_accuracy(empty, square(), NO_VOID) == 0.0
    assert davis.region_similarity(empty, empty, NO_VOID) == 1.0
    assert davis.contour_accuracy(empty, empty, NO_VOID) == 1.0


def test_the_boundary_is_where_a_pixel_differs_from_east_south_or_south_east():
    """The official rule: a lone pixel marks itself and the three neighbours that see it to their
    east, south or south-east; along the last row and column only the one look that stays inside
    counts, and the bottom-right corner never does."""
    dot = np.zeros((6, 6), bool)
    dot[2, 2] = True
    assert sorted(zip(*np.nonzero(davis.boundary(dot)))) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    full = np.ones((6, 6), bool)
    assert not davis.boundary(full).any()  # the frame's edge is no boundary
    corner = np.zeros((6, 6), bool)
    corner[5, 5] = True
    assert sorted(zip(*np.nonzero(davis.boundary(corner)))) == [(4, 4), (4, 5), (5, 4)]


def test_the_tolerance_disk_holds_the_pixels_within_the_radius():
    element = davis.disk(2)
    assert element.shape == (5, 5) and element.sum() == 13  # x^2 + y^2 <= 4
    assert element[0, 2] == 1 and element[0, 1] == 0 and element[1, 1] == 1


def test_a_one_pixel_thick_object_is_all_boundary():
    line = np.zeros((H, W), bool)
    line[50, 10:110] = True
    assert (davis.boundary(line) & line).sum() == 100
    assert davis.contour_accuracy(line, line, NO_VOID) == 1.0
    moved = np.roll(line, 4, axis=0)  # 4 rows away: beyond the 2-pixel tolerance
    assert davis.region_similarity(moved, line, NO_VOID) == 0.0
    assert davis.contour_accuracy(moved, line, NO_VOID) == 0.0


def test_void_pixels_count_for_nothing():
    void = np.zeros((H, W), bool)
    void[:, 70:] = True  # the prediction's spill to the right lies in the void
    spill = square() | (square(left=70) & void)
    assert davis.region_similarity(spill, square(), void) == 1.0


def test_two_objects_with_one_missed_score_each_separately():
    first = np.zeros((H, W), np.uint8)
    first[10:30, 10:30], first[60:90, 60:90] = 1, 2
    truth = [(first, NO_VOID)] * 5
    missed = np.where(first == 2, 0, first).astype(np.uint8)
    scores = davis.score_sequence([first, missed, missed, missed, first], truth)
    assert scores["frames_scored"] == 3  # the first and the last frame are not scored
    assert scores["objects"]["1"]["J"]["mean"] == 1.0 and scores["objects"]["2"]["J"]["mean"] == 0
    assert scores["J"] == 0.5 and scores["J&F"] == 0.5
    assert scores["objects"]["2"]["J"]["recall"] == 0.0


def test_statistics_recall_and_decay():
    stats = davis.statistics([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
    assert stats["recall"] == pytest.approx(4 / 8)
    # Bin edges round(linspace(1, 8, 5)) - 1 = 0, 2, 4, 5, 7 (2.75 -> 3, 4.5 -> 5); each bin
    # includes its right edge: the first holds frames 0-2, the last frames 5-7.
    assert [(b.start, b.stop) for b in davis.decay_bins(8)] == [(0, 3), (2, 5), (4, 6), (5, 8)]
    assert stats["decay"] == pytest.approx((1.0 + 1.0 + 0.8) / 3 - (0.2 + 0.0 + 0.0) / 3)


def test_label_kinds_are_told_apart(tmp_path):
    binary = np.zeros((4, 4), np.uint8)
    binary[1:3, 1:3] = 255
    indexed = np.array([[0, 1, 1, 255], [0, 2, 2, 255], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
    assert davis.label_kind(binary, "auto") == "binary"
    assert davis.label_kind(indexed, "auto") == "indexed"
    path = tmp_path / "00000.png"
    image = Image.fromarray(indexed)
    image.putpalette(davis.palette())
    image.save(path)
    ids, void = davis.read_annotation(path, "indexed")
    assert ids.max() == 2 and void.sum() == 2 and ids[void].max() == 0
    Image.fromarray(binary).save(path)
    ids, void = davis.read_annotation(path, "binary")
    assert set(np.unique(ids)) == {0, 1} and not void.any()


def test_a_two_object_sequence_is_propagated_per_object_and_ignores_void(tmp_path):
    """Features that are the true object ids (one-hot per pixel) carry each object on its own;
    a void band in the first annotation gives no label, and scores ignore it."""
    first = np.zeros((64, 64), np.uint8)
    first[8:32, 8:32], first[40:56, 32:56] = 1, 2  # whole 8 x 8 feature cells
    void = np.zeros((64, 64), bool)
    void[60:, :] = True  # a void band along the bottom, away from both objects
    frames = []
    for t in range(4):
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[first == 1] = (255, 0, 0)
        frame[first == 2] = (0, 255, 0)
        path = tmp_path / f"{t:05d}.png"
        Image.fromarray(frame).save(path)
        frames.append(path)

    def featurize(rgb):  # each cell's colour, plus a constant so that black has a direction
        cells = torch.from_numpy(rgb[::8, ::8].astype(np.float32))  # cells last: (h, w, C)
        cells = cells + torch.tensor([0, 0, 1.0])
        return torch.nn.functional.normalize(cells, dim=2)

    protocol = section("propagate", topk=1)
    predicted = segment_sequence(featurize, frames, (first, void), protocol, "cpu")
    scores = davis.score_sequence(predicted, [(first, void)] * 4)
    assert set(scores["objects"]) == {"1", "2"}
    # upsampling the cell labels rounds each object's corners off; nothing else is lost
    assert scores["objects"]["1"]["J"]["mean"] > 0.9 and scores["objects"]["2"]["J"]["mean"] > 0.9
    assert scores["F"] > 0.85
    assert all((p[56:] == 0).all() for p in predicted[1:])  # the void carried no object

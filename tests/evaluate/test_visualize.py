"""evaluate/visualize.py's pieces: the source pixels, the figure's bound, the similarity maps."""

import pytest
import torch
import torch.nn.functional as F

from cacl_cli.errors import CaclError
from cacl_cli.evaluate.visualize import MAX_ROWS, similarity_maps, source_pixels


def test_pixels_are_points_lists_or_grids_and_default_to_the_centre():
    assert source_pixels([], 100, 60) == [(50, 30)]
    assert source_pixels(["10,20 30,40"], 100, 60) == [(10, 20), (30, 40)]
    assert source_pixels(["grid:2x1"], 100, 60) == [(25, 30), (75, 30)]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("left,top", "write X,Y"),
        ("100,5", "lies outside the 100x60 frame"),
        ("grid:2", "'grid:3x2'"),
        ("grid:20x20", f"at most {MAX_ROWS}"),
    ],
)
def test_a_bad_pixel_is_one_line_naming_it(spec, message):
    with pytest.raises(CaclError, match=message):
        source_pixels([spec], 100, 60)


def test_the_pixel_finds_its_own_feature_in_an_identical_frame():
    maps = {"backbone": F.normalize(torch.randn(8, 6, 10), dim=0)}
    (found,) = similarity_maps(maps, maps, pixel=(55, 25), frame_size=(100, 60))
    assert found.space == "backbone" and found.values.shape == (6, 10)
    assert found.best == (55, 25)  # cell (5, 2)'s centre, in frame pixels
    assert found.values.max() == pytest.approx(1.0, abs=1e-5)

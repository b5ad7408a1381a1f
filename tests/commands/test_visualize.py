"""`cacl visualize` on real frames and videos, and its one-line errors."""

import numpy as np
import pytest
from PIL import Image

from cacl_cli.evaluate.visualize import LABEL_HEIGHT, PANEL_WIDTH, SimilarityMap, figure_row
from tests.commands.test_pretrain import one_line_error
from tests.conftest import pretrained, run_cacl

SPACES = ("backbone", "global", "pixel", "cycle")


def test_bedroom_frames_grid_and_arrays(tmp_path, shared_data):
    bedroom = shared_data / "frames" / "bedroom"
    result = run_cacl(
        "visualize", "--pixel", "120,80", bedroom, "--out", tmp_path, "--set", "model.width=16"
    )
    assert result.returncode == 0, result.stderr
    png = Image.open(tmp_path / "similarity.png")
    # one row: frame T plus one panel per space, each PANEL_WIDTH wide under two label lines,
    # then the colour bar under its legend
    assert png.size == (PANEL_WIDTH * (1 + len(SPACES)), 225 + 2 * LABEL_HEIGHT + 2 * LABEL_HEIGHT)
    for space in SPACES:
        sims = np.load(tmp_path / f"sim-r0-p0-{space}.npy")
        assert sims.ndim == 2 and np.all(sims <= 1.0001) and np.all(sims >= -1.0001)


def test_same_frame_peaks_at_the_source_and_pixels_differ(tmp_path, shared_data):
    bedroom = shared_data / "frames" / "bedroom"
    result = run_cacl(
        "visualize",
        "--pixel",
        "120,80 700,400",
        "--stride",
        "0",
        bedroom,
        "--out",
        tmp_path,
        "--set",
        "model.width=16",
        "--size",
        "128",
    )
    assert result.returncode == 0, result.stderr
    for space in SPACES:
        first = np.load(tmp_path / f"sim-r0-p0-{space}.npy")
        second = np.load(tmp_path / f"sim-r0-p1-{space}.npy")
        h, w = first.shape
        cell = (80 * h // 540, 120 * w // 960)
        assert first[cell] == pytest.approx(1.0, abs=1e-5) and first[cell] == first.max()
        assert not np.allclose(first, second)


def test_video_file_and_compare(tmp_path, shared_data):
    video = shared_data / "videos" / "realshort.mp4"
    run = tmp_path / "pre"
    pretrained(run, "schedule.steps=1")
    result = run_cacl(
        "visualize",
        "--pixel",
        "grid:2x1",
        video,
        "--out",
        tmp_path / "v",
        "--compare",
        run,
        run,
        "--size",
        "64",
    )
    assert result.returncode == 0, result.stderr
    png = Image.open(tmp_path / "v" / "similarity.png")
    assert png.size[0] == PANEL_WIDTH * 5  # realshort (320x240) is scaled up to the panel
    assert (tmp_path / "v" / "sim-r1-p1-cycle.npy").is_file()  # 2 runs x 2 pixels


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--pixel", "5000,10"], "lies outside the 960x540 frame"),
        (["--pixel", "abc"], "write X,Y in frame pixels"),
        (["--pixel", "10,10", "--stride", "40"], "has 32 frames; frame 40 was asked for"),
        (["--pixel", "grid:20x20"], "400 rows; one figure holds at most 64"),  # it took 3.3 GB
        (["--pixel", "grid:100000x100000"], "rows; one figure holds at most 64"),
    ],
)
def test_bad_requests_on_bedroom(tmp_path, shared_data, args, expected):
    line = one_line_error(
        run_cacl("visualize", shared_data / "frames" / "bedroom", *args, "--out", tmp_path)
    )
    assert expected in line


def test_empty_folder_and_non_image_file(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "holds no frames" in one_line_error(
        run_cacl("visualize", "--pixel", "1,1", tmp_path / "empty", "--out", tmp_path / "o")
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    assert "notes.txt is not a video (.mp4" in one_line_error(
        run_cacl("visualize", "--pixel", "1,1", notes, "--out", tmp_path / "o")
    )
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00" * 1000)
    assert "fake.mp4 is not a video OpenCV or decord can open" in one_line_error(
        run_cacl("visualize", "--pixel", "1,1", fake, "--out", tmp_path / "o")
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001.jpg").write_text("not a jpeg")
    (broken / "0002.jpg").write_text("not a jpeg")
    assert "0001.jpg is not a readable image" in one_line_error(
        run_cacl("visualize", "--pixel", "1,1", "--stride", "1", broken, "--out", tmp_path / "o")
    )


def test_one_colour_scale_shows_a_flat_map_as_flat():
    frame = np.full((60, 80, 3), 128, np.uint8)
    flat = [
        SimilarityMap("low", np.full((8, 10), 0.2), (5, 5)),
        SimilarityMap("high", np.full((8, 10), 0.8), (5, 5)),
    ]
    colour = lambda row, k: row[3 * LABEL_HEIGHT, int((k + 0.5) * PANEL_WIDTH)]  # noqa: E731
    own = figure_row(frame, frame, (5, 5), flat, "t", 8)
    shared = figure_row(frame, frame, (5, 5), flat, "t", 8, shared=(0.0, 1.0))
    assert np.array_equal(colour(own, 1), colour(own, 2))  # own scale: both look the same
    assert not np.array_equal(colour(shared, 1), colour(shared, 2))  # one scale: they differ


def test_without_pixel_the_frames_centre_is_taken_and_said(tmp_path, shared_data):
    bedroom = shared_data / "frames" / "bedroom"
    result = run_cacl(
        "visualize", bedroom, "--out", tmp_path, "--set", "model.width=8", "--size", "64"
    )
    assert result.returncode == 0, result.stderr
    assert "no --pixel given: using the frame's centre, 480,270" in result.stdout
    assert (tmp_path / "sim-r0-p0-backbone.npy").is_file()


def test_html_is_a_flag_like_propagates_and_the_former_page_path_still_works(tmp_path, shared_data):
    bedroom = shared_data / "frames" / "bedroom"
    small = ["--size", "64", "--channels", "4", "--set", "model.width=8", "--random-init"]
    flag = run_cacl("visualize", bedroom, "--html", "--out", tmp_path / "out", *small)
    assert flag.returncode == 0, flag.stderr
    assert (tmp_path / "out" / "explorer.html").stat().st_size > 1000
    assert not (tmp_path / "out" / "similarity.png").exists()
    for spelling in (["--html", str(tmp_path / "a.html")], [f"--html={tmp_path / 'b.HTML'}"]):
        former = run_cacl("visualize", bedroom, *spelling, *small)
        assert former.returncode == 0, former.stderr
    assert (tmp_path / "a.html").is_file() and (tmp_path / "b.HTML").is_file()
    again = run_cacl("visualize", bedroom, "--html", tmp_path / "a.html", *small)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_only_an_html_argument_after_the_flag_is_read_as_the_former_page_path():
    from cacl_cli.commands.visualize import former_html_spelling

    assert former_html_spelling(["--html", "p.html", "f/"]) == ["--html-file", "p.html", "f/"]
    assert former_html_spelling(["--html", "frames/"]) == ["--html", "frames/"]
    assert former_html_spelling(["clip.mp4", "--html"]) == ["clip.mp4", "--html"]

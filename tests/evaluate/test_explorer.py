"""`cacl visualize --html`: the page, checked in a real browser (headless Chromium) against the
exact maps that the PNG path writes."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cacl_cli.evaluate.explorer import compress
from tests.conftest import ROOT, pretrained, run_cacl

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# 32 of the features' channels and float16: the compressed cosine follows the exact one closely
# but not exactly (about 1 % of the energy is dropped here); 0.99 leaves room for that and
# still fails a page that computes anything else (a wrong cell, frame or head scores far lower).
MIN_CORRELATION = 0.97


@pytest.fixture(scope="module")
def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no Chromium here: `make browser` installs Debian's chromium package")
    return found


def browse(chromium, page, fragment, tmp_path, *extra):
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            *extra,
            f"file://{page}#{fragment}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def probe(chromium, page, fragment, tmp_path):
    dom = browse(chromium, page, fragment, tmp_path, "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), dom[-2000:]
    return json.loads(found.group(1).replace("&amp;", "&"))


def test_compression_keeps_dot_products_of_low_rank_features():
    torch.manual_seed(0)
    basis = torch.nn.functional.normalize(torch.randn(64, 4), dim=0)
    maps = [torch.einsum("dk,khw->dhw", basis, torch.randn(4, 5, 6)) for _ in range(3)]
    projected, kept = compress(maps, channels=4)
    assert kept == pytest.approx(1.0, abs=1e-6) and projected[0].shape == (4, 5, 6)
    exact = torch.einsum("dhw,dhw->hw", maps[0], maps[1]).numpy()
    approx = np.einsum("dhw,dhw->hw", projected[0].astype(np.float32), projected[1])
    assert np.allclose(exact, approx, rtol=1e-2, atol=1e-2)


@pytest.mark.slow
def test_the_page_in_a_browser_matches_the_exact_maps(tmp_path, shared_data, chromium):
    bedroom = shared_data / "frames" / "bedroom"
    run = pretrained(tmp_path / "run", "schedule.steps=2")
    common = ["--stride", "4", "--checkpoint", run, "--size", "128"]
    exact = run_cacl("visualize", bedroom, "--pixel", "120,80", *common, "--out", tmp_path / "png")
    assert exact.returncode == 0, exact.stderr
    page = tmp_path / "page.html"
    made = run_cacl(
        "visualize", bedroom, "--html", page, "--targets", "7", "--channels", "32", *common
    )
    assert made.returncode == 0, made.stderr
    assert not re.search(r"(src|href)=\"?(https?:)?//", page.read_text())  # nothing to fetch
    for head in ("backbone", "global", "pixel", "cycle"):
        shown = probe(chromium, page, f"pixel=120,80&head={head}", tmp_path)
        assert shown["head"] == head and shown["target"] == 4 and shown["pixel"] == [120, 80]
        drawn = np.array(shown["values"]).reshape(shown["grid"])
        truth = np.load(tmp_path / "png" / f"sim-r0-p0-{head}.npy")
        assert drawn.shape == truth.shape
        correlation = np.corrcoef(drawn.ravel(), truth.ravel())[0, 1]
        assert correlation > MIN_CORRELATION, (head, shown["kept"], correlation)
        assert shown["redraw_ms_median"] < 100 and shown["panels"] == 7
    # The same comparison tells a wrong pixel or a wrong head apart.
    truth = np.load(tmp_path / "png" / "sim-r0-p0-cycle.npy").ravel()
    wrong_ones = ("pixel=700,400&head=cycle", "pixel=160,80&head=cycle", "pixel=120,80&head=global")
    for fragment in wrong_ones:
        wrong = np.array(probe(chromium, page, fragment, tmp_path)["values"])
        assert np.corrcoef(wrong, truth)[0, 1] < MIN_CORRELATION, fragment
    shot = tmp_path / "explorer.png"
    browse(
        chromium,
        page,
        "pixel=120,80&head=all",
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1600,1000",
    )
    assert shot.stat().st_size > 50_000
    if os.environ.get("CACL_DOC_FIGURES"):  # refresh the screenshot in the docs
        shutil.copy(shot, Path(ROOT) / "docs" / "figures" / "visualize-html.png")


def test_the_propagation_page_shows_each_frame_and_its_scores(tmp_path, shared_data, chromium):
    out = tmp_path / "prop"
    done = run_cacl(
        "propagate",
        shared_data / "davis",
        "--seq",
        "blackswan",
        "--random-init",
        "--width",
        "8",
        "--preset",
        "propagate-cpu",
        "--frames",
        "6",
        "--size",
        "64",
        "--html",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    page = out / "blackswan.html"
    data = json.loads(re.search(r"const DATA = (.*?);\n", page.read_text()).group(1))
    results = json.loads((out / "results.json").read_text())["sequences"]["blackswan"]
    scored = [f["J"] for f in data["frames"] if f["J"] is not None]
    assert len(data["frames"]) == 6 and len(scored) == results["frames_scored"] == 4
    assert np.mean(scored) == pytest.approx(results["J"])  # one object: the page's J is DAVIS's
    shown = probe(chromium, page, "frame=2", tmp_path)
    assert shown["frame"] == data["frames"][2]["name"] and shown["J"] == data["frames"][2]["J"]

"""The scorer against the official DAVIS evaluation code's numbers on the shared sequences.

``shared/reference/davis-official-copy-baseline.json`` holds what the official code computed for
the copy baseline (every frame predicted as the first annotation) on the ten sequences of
``shared/data/davis-2016``: J and F per scored frame, recall and decay per sequence, the overall
means. The scorer must give every one of them to float precision.
"""

import json

import pytest

from cacl_cli.evaluate import davis
from cacl_cli.evaluate.propagate import open_sequence, overall_scores
from tests.conftest import ROOT, run_cacl

# One worker builds the module's fixtures once.
pytestmark = pytest.mark.xdist_group("test_davis_official")

REFERENCE = ROOT.parent / "shared" / "reference" / "davis-official-copy-baseline.json"
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def official():
    if not REFERENCE.is_file():
        pytest.skip(f"reference scores not found at {REFERENCE}")
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def copy_scores(official):
    """This scorer's results for the copy baseline on each reference sequence."""
    root = REFERENCE.parent.parent / "data" / "davis-2016"
    if not root.is_dir():
        pytest.skip(f"DAVIS-2016 sequences not found at {root}")
    scores = {}
    for name in official["sequences"]:
        sequence = open_sequence(root, name, 0, "auto")
        truth = sequence.truth()
        scored = davis.score_sequence([truth[0][0]] * len(sequence.frames), truth)
        scored["names"] = [sequence.frames[f["frame"]].stem + ".png" for f in scored["frames"]]
        scores[name] = scored
    return scores


def test_every_scored_frame_has_the_official_j_and_f(official, copy_scores):
    for name, reference in official["sequences"].items():
        ours = copy_scores[name]
        assert ours["names"] == list(reference["frames"]), name
        for frame, scored in zip(ours["names"], ours["frames"]):
            expected = reference["frames"][frame]
            assert scored["J"] == pytest.approx(expected["J"], abs=TOLERANCE), (name, frame)
            assert scored["F"] == pytest.approx(expected["F"], abs=TOLERANCE), (name, frame)


def test_every_sequence_has_the_official_mean_recall_and_decay(official, copy_scores):
    for name, reference in official["sequences"].items():
        (obj,) = copy_scores[name]["objects"].values()  # DAVIS-2016: one object per sequence
        for measure in ("J", "F"):
            for stat in ("mean", "recall", "decay"):
                key = f"{measure}_{stat}"
                if key in reference:
                    assert obj[measure][stat] == pytest.approx(reference[key], abs=TOLERANCE), (
                        name,
                        key,
                    )


def test_the_overall_means_are_the_official_ones(official, copy_scores):
    overall = overall_scores(copy_scores)
    for key in ("J_mean", "F_mean", "JF_mean", "J_recall", "J_decay", "F_recall", "F_decay"):
        ours = overall["J&F_mean" if key == "JF_mean" else key]
        assert ours == pytest.approx(official[key], abs=TOLERANCE), key


def test_the_copy_baseline_prints_the_official_j_and_f_x100(official, tmp_path):
    root = REFERENCE.parent.parent / "data" / "davis-2016"
    done = run_cacl("propagate", root, "--baseline", "copy", "--out", tmp_path / "copy")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    mean_row = next(line for line in lines if line.lstrip("│ ").startswith("mean"))
    assert "25.03" in mean_row and f"{100 * official['J_mean']:.2f}" in mean_row
    results = json.loads((tmp_path / "copy" / "results.json").read_text())
    assert "_x100" in results["scale"]
    assert results["J&F_mean_x100"] == pytest.approx(100 * official["JF_mean"], abs=1e-4)

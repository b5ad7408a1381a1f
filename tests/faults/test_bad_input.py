"""The bad-input catalogue: every command answers bad input with one line and exit code 2."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.commands.test_pretrain import one_line_error
from tests.conftest import run_cacl


@pytest.fixture
def bad_things(tmp_path, shared_data):
    """Files and folders, each wrong in one way."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "syntax.yaml").write_text("model: {width: [8\n")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "r50.pt")
    voc = tmp_path / "voc"
    shutil.copytree(shared_data / "voc-mini", voc)
    (voc / "SegmentationClass" / "2011_000006.png").unlink()
    own = tmp_path / "own"
    (own / "images").mkdir(parents=True)
    (own / "masks").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(own / "images" / "a.png")
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(own / "masks" / "a.png")
    (own / "classes.txt").write_text("x\ny\n")
    for split in ("train", "val"):
        (own / f"{split}.txt").write_text("a\n")
    return tmp_path


BEDROOM = "{data}/frames/bedroom"
CASES = [
    ("unknown preset", ["pretrain", "--preset", "r18-kinetic"], "unknown preset 'r18-kinetic'"),
    (
        "unknown --set key",
        ["probe", "--random-init", "--set", "eval.cahce=off"],
        "unknown key 'eval.cahce' (did you mean 'eval.cache'?)",
    ),
    (
        "ill-typed --set key",
        ["finetune", "--random-init", "--set", "schedule.epochs=lots"],
        "'schedule.epochs' must be int",
    ),
    ("YAML syntax error", ["pretrain", "--preset", "{tmp}/syntax.yaml"], "syntax.yaml line 2"),
    (
        "missing data folder",
        ["probe", "--random-init", "--preset", "probe-voc", "--data", "{tmp}/nowhere"],
        "nowhere: no such folder",
    ),
    (
        "empty data folder",
        ["pretrain", "--data", "{tmp}/empty"],
        "holds neither a manifest.jsonl nor any images",
    ),
    (
        "dataset with a missing mask",
        ["probe", "--random-init", "--preset", "probe-voc", "--data", "{tmp}/voc"],
        "2011_000006.png is missing",
    ),
    (
        "image/mask size mismatch",
        [
            "probe",
            "--random-init",
            "--set",
            "eval.dataset=folder",
            "--data",
            "{tmp}/own",
            "--set",
            "model.width=8",
        ],
        "mask is 5x5 but its image a.png is 8x6",
    ),
    (
        "pixel outside the frame",
        ["visualize", BEDROOM, "--pixel", "961,10"],
        "lies outside the 960x540 frame",
    ),
    ("non-numeric --pixel", ["visualize", BEDROOM, "--pixel", "left,top"], "write X,Y"),
    (
        "checkpoint missing most of a ResNet",
        ["probe", "--checkpoint", "{tmp}/r50.pt", "--set", "model.width=16"],
        "refusing a partial load",
    ),
    ("not a checkpoint", ["probe", "--checkpoint", "{tmp}/junk.pt"], "junk.pt is not a readable"),
    ("zero batch size", ["pretrain", "--set", "data.batch_size=0"], "must be from 1 to 65536"),
    (
        "negative batch size",
        ["probe", "--random-init", "--set", "data.batch_size=-8"],
        "must be from 1 to 65536",
    ),
    (
        "stride longer than every clip",
        ["pretrain", "--set", "data.stride=64"],
        "'data.stride' is 64 but clips have 32 frames",
    ),
    (
        "stride beyond the last frame",
        ["visualize", BEDROOM, "--pixel", "5,5", "--stride", "99"],
        "has 32 frames; frame 99 was asked for",
    ),
    (
        "extract from a missing folder",
        ["extract-pairs", "{tmp}/nowhere"],
        "is not a folder of videos",
    ),
    ("extract from a folder without videos", ["extract-pairs", "{tmp}/empty"], "holds no videos"),
    # the option parser's own refusals: one line, as the app's
    (
        "NaN radius",
        ["propagate", "{data}/davis", "--radius", "nan"],
        "Invalid value for '--radius'",
    ),
    (
        "an extra argument",
        ["visualize", BEDROOM, "--html", "{tmp}/page.html", "{tmp}/empty"],
        "unexpected extra argument",
    ),
    ("an unknown option", ["pretrain", "--stpes", "3"], "No such option: --stpes"),
    (
        "channels past every space",
        ["visualize", BEDROOM, "--html", "--channels", "100000"],
        "'--channels'",
    ),
    # values that reached a traceback before
    (
        "a shard count of 5000 digits",
        ["extract-pairs", "{tmp}/empty", "--shard", "0/" + "9" * 5000],
        "give K/N with 0 <= K < N",
    ),
    (
        "a --set nested past YAML's depth",
        ["pretrain", "--set", "model.width=" + "[" * 100_000],
        "the value is not a YAML scalar or list",
    ),
    (
        "a list of numbers for words",
        ["extract-pairs", "{tmp}/empty", "--set", "extract.extensions=[1]"],
        "takes a list of words",
    ),
    (
        "an empty list of fractions",
        ["finetune", "--random-init", "--set", "eval.fractions=[]"],
        "'eval.fractions' needs at least one value",
    ),
    (
        "a sequence name with a newline",
        ["propagate", "{data}/davis", "--random-init", "--seq", "black\nswan"],
        "sequence black\\nswan: not in",
    ),
]


@pytest.mark.parametrize(
    "task,message",
    [
        ("abc", "'abc', not a whole number"),
        ("", "'', not a whole number"),
        (None, "SLURM_ARRAY_TASK_ID is not set"),
    ],
)
def test_slurm_variables_are_checked_as_options_are(bad_things, monkeypatch, task, message):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    if task is not None:
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    line = one_line_error(
        run_cacl(
            "extract-pairs", bad_things / "empty", "--shard", "slurm", "--out", bad_things / "out"
        )
    )
    assert message in line, line


@pytest.mark.parametrize("what,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(bad_things, shared_data, what, args, expected):
    args = [a.format(tmp=bad_things, data=shared_data) for a in args]
    line = one_line_error(run_cacl(*args, "--out", bad_things / "out"))
    assert expected in line, line

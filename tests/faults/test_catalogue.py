"""The fault catalogue: every file cacl reads, made empty, binary, truncated, of the wrong kind
or hostile, and every config value out of its sense. Each case must end in one line naming the
file or key, exit 2, no traceback (docs/reliability.md lists them)."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.commands.test_pretrain import one_line_error
from tests.conftest import SHARED_DATA, pretrained, run_cacl, sets

# One worker builds the module's fixtures once.
pytestmark = pytest.mark.xdist_group("test_catalogue")

BINARY = b"\xff\xfe\x00\x01 not text"
PROBE_FAST = ["--set", "model.width=8", "--set", "schedule.epochs=1", "--set", "eval.resize=64"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return pretrained(tmp_path_factory.mktemp("catalogue") / "run", "schedule.steps=2")


def voc(tmp, damage):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    root = tmp / "voc"
    shutil.copytree(SHARED_DATA / "voc-mini", root)
    damage(root)
    return ["probe", "--random-init", "--data", root, *PROBE_FAST]


def first_mask(root):
    return sorted((root / "SegmentationClass").glob("*.png"))[0]


def sixteen_bit(root):
    labels = np.array(Image.open(first_mask(root))).astype(np.uint16)
    labels[0, 0] = 299  # used to wrap to class 43 without a word
    Image.fromarray(labels).save(first_mask(root))


def image_folder(tmp, classes):
    root = tmp / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "a.png")
    for split in ("train", "val"):
        (root / f"{split}.txt").write_text("a\n")
    (root / "classes.txt").write_bytes(classes)
    return ["probe", "--random-init", "--data", root, *PROBE_FAST]


def manifest(tmp, text):
    (tmp / "pairs").mkdir()
    (tmp / "pairs" / "manifest.jsonl").write_text('{"cacl_pairs": 1}\n' + text)
    return ["pretrain", "--data", tmp / "pairs", *sets("schedule.steps=1")]


def preset_file(tmp, content):
    (tmp / "p.yaml").write_bytes(content)
    return ["presets", tmp / "p.yaml"]


def resumed(tmp, run, damage):
    copy = tmp / "copy"
    shutil.copytree(run, copy)
    damage(copy)
    return ["pretrain", "--out", copy, "--resume"]


CASES = {  # name -> (build(tmp, run) -> argv, expected words of the one line)
    "split list is binary": (
        lambda t, r: voc(t, lambda v: (v / "ImageSets/Segmentation/train.txt").write_bytes(BINARY)),
        "train.txt is not UTF-8 text",
    ),
    "split list is empty": (
        lambda t, r: voc(t, lambda v: (v / "ImageSets/Segmentation/train.txt").write_text("")),
        "train.txt lists no images",
    ),
    "mask truncated": (
        lambda t, r: voc(t, lambda v: first_mask(v).write_bytes(first_mask(v).read_bytes()[:60])),
        "is not a readable mask PNG",
    ),
    "16-bit mask label above 255": (lambda t, r: voc(t, sixteen_bit), "label 299 is outside"),
    "classes.txt empty": (lambda t, r: image_folder(t, b""), "classes.txt names no classes"),
    "classes.txt binary": (lambda t, r: image_folder(t, BINARY), "classes.txt is not UTF-8"),
    "manifest line not JSON": (
        lambda t, r: manifest(t, "not json\n"),
        "manifest.jsonl, line 2: not a JSON record",
    ),
    "manifest frame outside its folder": (
        lambda t, r: manifest(t, '{"frames": [["../x.jpg", "../y.jpg"]]}\n'),
        "lies outside",
    ),
    "manifest absolute frame path": (
        lambda t, r: manifest(t, '{"frames": [["/etc/passwd", "/etc/hosts"]]}\n'),
        "lies outside",
    ),
    "manifest frames of the wrong kind": (
        lambda t, r: manifest(t, '{"frames": "a"}\n'),
        "'frames' must be lists",
    ),
    "preset binary": (lambda t, r: preset_file(t, BINARY), "p.yaml is not UTF-8 text"),
    "preset a list": (lambda t, r: preset_file(t, b"- a\n"), "must be a mapping of sections"),
    "preset inherits itself": (
        lambda t, r: preset_file(t, f"base: {t}/p.yaml\n".encode()),
        "inherits itself",
    ),
    "run config binary on resume": (
        lambda t, r: resumed(t, r, lambda c: (c / "config.yaml").write_bytes(BINARY)),
        "config.yaml is not UTF-8 text",
    ),
    "every checkpoint damaged on resume": (
        lambda t, r: resumed(
            t, r, lambda c: [p.write_bytes(b"x") for p in (c / "checkpoints").glob("*.pt")]
        ),
        "none of its 1 checkpoint(s) loads",
    ),
    "checkpoint empty": (
        lambda t, r: (t / "e.pt").write_bytes(b"") or ["probe", "--checkpoint", t / "e.pt"],
        "e.pt is not a readable checkpoint",
    ),
    "checkpoint holds a list": (
        lambda t, r: torch.save([1, 2], t / "l.pt") or ["probe", "--checkpoint", t / "l.pt"],
        "l.pt holds no state dict of tensors",
    ),
}
VALUES = {  # --set value -> the key the line must name
    "optim.lr=.nan": "optim.lr",
    "optim.lr=-1": "optim.lr",
    "optim.lr=.inf": "optim.lr",
    "optim.lr_batch=0": "optim.lr_batch",
    "run.seed=-3": "run.seed",
    "run.seed=12345678901234567890": "run.seed",
    "augment.crop_scale=[1.0,0.2]": "augment.crop_scale",
    "augment.crop_scale=[a,b]": "augment.crop_scale",
    "data.size=1": "data.size",
    "world.objects_max=0": "world.objects_max",
    "schedule.steps=10000000000000": "schedule.steps",
    "data.batch_size=100000000": "data.batch_size",
    "eval.fractions=[0]": "eval.fractions",
    "eval.fractions=[-5]": "eval.fractions",
    "eval.fractions=[1000]": "eval.fractions",
}


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_or_hostile_files(tmp_path, base_run, name):
    build, expected = CASES[name]
    argv = build(tmp_path, base_run)
    out = [] if argv[0] == "presets" or "--resume" in argv else ["--out", tmp_path / "out"]
    line = one_line_error(run_cacl(*argv, *out))
    assert expected in line, line


@pytest.mark.parametrize("value", list(VALUES))
def test_values_out_of_their_sense(tmp_path, value):
    command = "finetune" if value.startswith("eval.") else "pretrain"
    line = one_line_error(run_cacl(command, "--set", value, "--out", tmp_path / "o"))
    assert f"key '{VALUES[value]}'" in line, line

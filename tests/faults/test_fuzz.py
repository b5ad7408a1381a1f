"""The hostile-input harness: every input kind of every command, under every mutation.

A cell is (command, input kind, mutation). It copies one small, valid tree of inputs (a world
export, an image folder, a pairs folder, a pretrain run, a preset per command), damages one file
of the kind, runs the real command line in a long-lived worker process (so a decoder's segfault
or a read that blocks fails its cell, not the suite, without an interpreter start per cell) and
asserts the promise of docs/reliability.md:

- the documented exit code (``EXPECTED``: 0 where the damage is harmless or a bad video is
  skipped, 2 for bad input found at start, 1 for bad data met mid-run);
- an error is one line, ``error: ...``, naming the damaged file (or its key), no traceback;
- nothing outside ``--out`` is added, removed or changed, the inputs included.

The command list comes from the app itself, so a command added without a row here fails
``test_every_command_has_a_row``; ``NOT_APPLICABLE`` says why each missing cell is missing.
"""

import json
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.main import get_command

from cacl_cli.cli import app
from tests.conftest import huge_png, run_cacl, run_cacl_process, sets, tree_digest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("test_fuzz"),  # one worker builds the module's fixtures once
]

ALARM_S = 60  # a cell that takes longer is blocked, not slow: the slowest takes ~10 s
CHECKPOINT = "run/checkpoints/step-0000002.pt"
VOC = "world/voc/VOC2012"
SEQUENCE = "world/davis/JPEGImages/480p/world_0000"


# -- the valid tree every cell starts from ------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The valid tree; CACL_FUZZ_BASE names a folder to keep it in (built there once), so the
    cells can be run by another version of cacl on the same inputs."""
    kept = os.environ.get("CACL_FUZZ_BASE")
    if kept and (Path(kept) / "elsewhere").is_dir():
        return Path(kept)
    root = Path(kept) if kept else tmp_path_factory.mktemp("fuzz-base")
    world = ["--clips", "2", "--train-images", "4", "--val-images", "2", "--davis-clips", "1"]
    assert run_cacl("world", "--out", root / "world", *world).returncode == 0
    (root / "images").mkdir()
    for name in ("00000.png", "00001.png"):
        shutil.copy(root / SEQUENCE / name, root / "images" / name)
    extracted = run_cacl(
        "extract-pairs",
        root / "world" / "videos",
        "--out",
        root / "pairs",
        "--workers",
        "1",
        "--pairs-per-clip",
        "1",
    )
    assert extracted.returncode == 0, extracted.stderr
    tarred = run_cacl(
        "extract-pairs",
        root / "world" / "videos",
        "--out",
        root / "pairs-tar",
        "--format",
        "tar",
        "--workers",
        "1",
        "--pairs-per-clip",
        "1",
    )
    assert tarred.returncode == 0, tarred.stderr
    (root / "pairs" / ".records").mkdir(exist_ok=True)  # a killed run left a record: merged next
    record = (root / "pairs" / "manifest.jsonl").read_text().splitlines()[1]
    (root / "pairs" / ".records" / f"{json.loads(record)['clip']}.json").write_text(record + "\n")
    trained = run_cacl("pretrain", "--out", root / "run", *sets("schedule.steps=2"))
    assert trained.returncode == 0, trained.stderr
    (root / "split.txt").write_text("world_0000\n")
    for command, preset in PRESETS.items():
        more = "eval:\n  dataset: voc\n" if command == "finetune" else "run:\n  seed: 3\n"
        (root / f"preset-{command}.yaml").write_text(f"base: {preset}\n{more}")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "keep.txt").write_text("not cacl's\n")
    return root


PRESETS = {
    "pretrain": "tiny-world",
    "probe": "probe-voc",
    "finetune": "finetune-world",
    "propagate": "propagate-cpu",
    "visualize": "tiny-world",
    "extract-pairs": "tiny-world",
    "export": "tiny-world",
    "world": "tiny-world",
    "presets": "tiny-world",
}

FAST_EVAL = ["--set", "model.width=8", "--set", "eval.resize=32", "--set", "schedule.epochs=1"]


def _first(folder, pattern):
    return sorted(folder.glob(pattern))[0]


def _lock_in(folder):
    """The lock file of an output folder, made so that a mutation can put a link or a FIFO in
    its place before the command claims the folder."""

    def target(d):
        (d / folder).mkdir(parents=True, exist_ok=True)
        (d / folder / ".cacl.lock").touch()
        return d / folder / ".cacl.lock"

    return target


def _next_shard(d):
    """A new video for the tar extraction, and the shard its rerun writes next."""
    video = d / "world/videos/world/clip_000000.mp4"
    shutil.copy(video, video.with_name("clip_new.mp4"))
    (d / "pairs-tar" / "pairs-000001.tar").touch()
    return d / "pairs-tar" / "pairs-000001.tar"


# -- what each command reads: kind -> (the file to damage, the command line) --------------------


def pretrain_rows():
    tiny = sets("schedule.steps=2")

    def trained_on(data):  # the command line that pretrains on the cell's ``data`` folder
        return lambda d, f: ["pretrain", "--data", d / data, "--out", d / "out", *tiny]

    return {
        "frame": (lambda d: d / "images" / "00001.png", trained_on("images")),
        "pairs frame": (lambda d: _first(d / "pairs", "*/*.jpg"), trained_on("pairs")),
        "manifest": (lambda d: d / "pairs" / "manifest.jsonl", trained_on("pairs")),
        "pairs index": (lambda d: d / "pairs" / "index.bin", trained_on("pairs")),
        "tar shard": (lambda d: _first(d / "pairs-tar", "*.tar"), trained_on("pairs-tar")),
        "checkpoint": (
            lambda d: d / CHECKPOINT,
            lambda d, f: [
                "pretrain",
                "--out",
                d / "run",
                "--resume",
                *tiny,
                "--set",
                "schedule.steps=3",
            ],
        ),
        "run log": (
            lambda d: d / "run" / "metrics.jsonl",
            lambda d, f: [
                "pretrain",
                "--out",
                d / "run",
                "--resume",
                *tiny,
                "--set",
                "schedule.steps=3",
            ],
        ),
        "init weights": (
            lambda d: d / CHECKPOINT,
            lambda d, f: ["pretrain", "--out", d / "out", "--init", f, *tiny],
        ),
        "config": (
            lambda d: d / "run" / "config.yaml",
            lambda d, f: ["pretrain", "--out", d / "run", "--resume"],
        ),
        "preset": (
            lambda d: d / "preset-pretrain.yaml",
            lambda d, f: ["pretrain", "--preset", f, "--out", d / "out", *tiny],
        ),
        "lock file": (_lock_in("out"), lambda d, f: ["pretrain", "--out", d / "out", *tiny]),
    }


def evaluation_rows(command):
    extra = ["--set", "eval.fractions=[100]"] if command == "finetune" else []

    def line(d, weights=("--random-init",)):
        return [command, *weights, "--data", d / VOC, "--out", d / "out", *FAST_EVAL, *extra]

    def train_id(d):
        return (d / VOC / "ImageSets/Segmentation/train.txt").read_text().split()[0]

    return {
        "frame": (lambda d: d / VOC / "JPEGImages" / f"{train_id(d)}.jpg", lambda d, f: line(d)),
        "mask": (
            lambda d: d / VOC / "SegmentationClass" / f"{train_id(d)}.png",
            lambda d, f: line(d),
        ),
        "split list": (
            lambda d: d / VOC / "ImageSets" / "Segmentation" / "train.txt",
            lambda d, f: line(d),
        ),
        "checkpoint": (lambda d: d / CHECKPOINT, lambda d, f: line(d, ("--checkpoint", f))),
        "preset": (lambda d: d / f"preset-{command}.yaml", lambda d, f: [*line(d), "--preset", f]),
        "lock file": (_lock_in("out"), lambda d, f: line(d)),
    }


def propagate_rows():
    def line(d, *more, weights=("--random-init", "--set", "model.width=8"), preset="propagate-cpu"):
        return [
            "propagate",
            d / "world" / "davis",
            *weights,
            "--preset",
            preset,
            "--frames",
            "3",
            "--size",
            "32",
            "--out",
            d / "out",
            *more,
        ]

    annotations = "world/davis/Annotations/480p/world_0000"
    return {
        "frame": (lambda d: d / SEQUENCE / "00001.png", lambda d, f: line(d)),
        "mask": (lambda d: d / annotations / "00000.png", lambda d, f: line(d)),
        "split list": (lambda d: d / "split.txt", lambda d, f: line(d, "--split", f)),
        "checkpoint": (lambda d: d / CHECKPOINT, lambda d, f: line(d, weights=("--checkpoint", f))),
        "preset": (lambda d: d / "preset-propagate.yaml", lambda d, f: line(d, preset=f)),
        "lock file": (_lock_in("out"), lambda d, f: line(d)),
    }


def visualize_rows():
    def line(d, frames, weights=("--random-init",)):
        return [
            "visualize",
            frames,
            "--pixel",
            "4,4",
            "--stride",
            "1",
            "--size",
            "32",
            *weights,
            "--set",
            "model.width=8",
            "--out",
            d / "out",
        ]

    return {
        "frame": (lambda d: d / SEQUENCE / "00000.png", lambda d, f: line(d, d / SEQUENCE)),
        "video": (lambda d: d / "world/videos/world/clip_000000.mp4", lambda d, f: line(d, f)),
        "checkpoint": (
            lambda d: d / CHECKPOINT,
            lambda d, f: line(d, d / SEQUENCE, ("--checkpoint", f)),
        ),
        "preset": (
            lambda d: d / "preset-visualize.yaml",
            lambda d, f: [*line(d, d / SEQUENCE), "--preset", f],
        ),
        "lock file": (_lock_in("out"), lambda d, f: line(d, d / SEQUENCE)),
    }


def extract_rows():
    def line(d, out, *more):
        return [
            "extract-pairs",
            d / "world" / "videos",
            "--out",
            out,
            "--workers",
            "1",
            "--pairs-per-clip",
            "1",
            *more,
        ]

    return {
        "video": (
            lambda d: d / "world/videos/world/clip_000000.mp4",
            lambda d, f: line(d, d / "out"),
        ),
        "manifest": (lambda d: d / "pairs" / "manifest.jsonl", lambda d, f: line(d, d / "pairs")),
        "pairs index": (lambda d: d / "pairs" / "index.bin", lambda d, f: line(d, d / "pairs")),
        "record": (
            lambda d: _first(d / "pairs" / ".records", "*.json"),
            lambda d, f: line(d, d / "pairs"),
        ),
        "preset": (
            lambda d: d / "preset-extract-pairs.yaml",
            lambda d, f: line(d, d / "out", "--preset", f),
        ),
        "lock file": (_lock_in("pairs"), lambda d, f: line(d, d / "pairs")),
        "next tar shard": (_next_shard, lambda d, f: line(d, d / "pairs-tar", "--format", "tar")),
    }


ROWS = {
    "pretrain": pretrain_rows(),
    "probe": evaluation_rows("probe"),
    "finetune": evaluation_rows("finetune"),
    "propagate": propagate_rows(),
    "visualize": visualize_rows(),
    "extract-pairs": extract_rows(),
    "export": {
        "checkpoint": (
            lambda d: d / CHECKPOINT,
            lambda d, f: ["export", "--checkpoint", f, "--out", d / "out"],
        ),
        "lock file": (
            _lock_in("out"),
            lambda d, f: ["export", "--checkpoint", d / CHECKPOINT, "--out", d / "out"],
        ),
        "preset": (
            lambda d: d / "preset-export.yaml",
            lambda d, f: [
                "export",
                "--checkpoint",
                d / CHECKPOINT,
                "--preset",
                f,
                "--out",
                d / "out",
            ],
        ),
    },
    "world": {
        "preset": (
            lambda d: d / "preset-world.yaml",
            lambda d, f: [
                "world",
                "--preset",
                f,
                "--out",
                d / "out",
                "--clips",
                "1",
                "--train-images",
                "1",
                "--val-images",
                "1",
                "--davis-clips",
                "1",
            ],
        ),
    },
    "presets": {"preset": (lambda d: d / "preset-presets.yaml", lambda d, f: ["presets", f])},
}


# -- the mutations -------------------------------------------------------------------------------
# Each damages ``path`` in the cell's tree ``d`` and returns the path the command is given.


def zero_bytes(path, d):
    path.write_bytes(b"")
    return path


def truncated(path, d):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def wrong_header(path, d):
    data = path.read_bytes()
    path.write_bytes(b"GIF89a\x00\x07" + bytes(56) + data[64:])  # another format's magic
    return path


def huge_header(path, d):
    mask = "Annotations" in str(path) or "SegmentationClass" in str(path)
    return huge_png(path, colour_type=0 if mask else 2)


def other_size(path, d):
    image = Image.open(path)
    image.resize((image.width * 2 + 8, image.height + 8)).save(path, format=image.format)
    return path


def other_mode(path, d):
    image = Image.open(path)
    if image.mode == "P":  # a label map saved as colours, as a photo editor would
        image.convert("RGB").save(path, format="PNG")
    else:  # a frame saved as greyscale
        image.convert("L").save(path, format=image.format)
    return path


def sixteen_bit(path, d):
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(pixels).save(path, format="PNG")  # uint16: a 16-bit PNG
    return path


def ids_out_of_range(path, d):
    pixels = np.array(Image.open(path))
    pixels[: pixels.shape[0] // 2] = 200  # neither a class nor the 255 'ignore'
    image = Image.fromarray(pixels.astype(np.uint8), mode="P")
    image.putpalette(Image.open(path).getpalette() or [])
    image.save(path, format="PNG")
    return path


def non_utf8_name(path, d):
    renamed = path.with_name(os.fsdecode(b"\xff\xfe-" + os.fsencode(path.name)))
    path.rename(renamed)
    return renamed


def fifo(path, d):
    path.unlink()
    os.mkfifo(path)
    return path


def link_out_of_the_tree(path, d):
    moved = d / "elsewhere" / path.name
    shutil.move(path, moved)
    path.symlink_to(moved)
    return path


def dangling_link(path, d):
    path.unlink()
    path.symlink_to(d / "elsewhere" / "gone")
    return path


def wrong_field_types(path, d):
    if path.suffix == ".pt":
        torch.save({"model": [1, 2], "step": "abc", "config": 5}, path)
    elif path.suffix == ".json":
        path.write_text(json.dumps({"clip": 5, "source": ["x"], "status": None}) + "\n")
    elif path.suffix == ".jsonl":
        lines = path.read_text().splitlines()
        first = {"clip": 5, "source": ["x"], "frames": "frame.jpg"}
        path.write_text("\n".join([lines[0], json.dumps(first), *lines[2:]]) + "\n")
    else:
        path.write_text(
            yaml.safe_dump(
                {"base": 7, "model": [1, 2], "schedule": {"steps": "x"}, "data": {"path": {"a": 1}}}
            )
        )
    return path


def hostile_content(path, d):
    """A file cacl wrote, made by hand: every stamp and checksum valid, the content hostile."""
    if path.name == "index.bin":  # frames named outside the folder, the stamp kept
        from cacl_cli.data.manifest import read_manifest
        from cacl_cli.data.pair_index import Strings, index_arrays, write_arrays

        manifest = path.parent / "manifest.jsonl"
        arrays = index_arrays(read_manifest(manifest)[1])
        names = Strings.of([str(d / "elsewhere" / "keep.txt")] * (len(arrays["file_starts"]) - 1))
        arrays.update(file_blob=names.blob, file_starts=names.starts)
        write_arrays(path.parent, arrays, manifest)
    elif path.suffix == ".pt":
        state = torch.load(path, weights_only=True)
        torch.save({**state, "format": "x"}, path)
    elif path.suffix in (".json", ".jsonl"):
        lines = path.read_text().splitlines()
        record = json.loads(lines[-1]) | {"frames": [["../elsewhere/keep.txt", "a\0b.jpg"]]}
        path.write_text("\n".join(lines[:-1] + [json.dumps(record)]) + "\n")
    else:  # YAML: a value that is a list where a number goes, inside a valid section
        path.write_text(path.read_text() + "\nschedule:\n  steps: [1, 2]\n")
    return path


def nested_deep(path, d):
    """Three hundred thousand levels of nesting: more than any parser can descend."""
    if path.suffix in (".yaml", ".yml"):
        path.write_text("run: " + "[" * 300_000 + "]" * 300_000 + "\n")
    else:
        path.write_text("[" * 300_000 + "]" * 300_000 + "\n")
    return path


FILE = [
    zero_bytes,
    truncated,
    wrong_header,
    non_utf8_name,
    fifo,
    link_out_of_the_tree,
    dangling_link,
]
IMAGE = [huge_header, other_size, other_mode, sixteen_bit]
STRUCTURED = [wrong_field_types, hostile_content, nested_deep]  # files cacl wrote: input too
# Where cacl writes in place (a lock, a log, a shard): a link or a FIFO put there first.
WRITE_TARGET = [fifo, dangling_link, link_out_of_the_tree]
MUTATIONS = {m.__name__: m for m in [*FILE, *IMAGE, ids_out_of_range, *STRUCTURED]}
KINDS = {  # input kind -> the mutations that apply to it
    "frame": FILE + IMAGE,
    "pairs frame": FILE + IMAGE,
    "mask": FILE + IMAGE + [ids_out_of_range],
    "video": FILE,
    "split list": FILE,
    "tar shard": FILE,
    "run log": FILE + [nested_deep],
    "pairs index": FILE + [hostile_content, nested_deep],
    "record": FILE + STRUCTURED,
    "checkpoint": FILE + [wrong_field_types, hostile_content],
    "init weights": FILE + [wrong_field_types, hostile_content],
    **{k: FILE + STRUCTURED for k in ("config", "preset", "manifest")},
    "lock file": WRITE_TARGET,
    "next tar shard": WRITE_TARGET,
}
# Names the layout fixes: a file renamed is a missing file (tested elsewhere), not an odd name.
FIXED_NAMES = {
    ("pretrain", "pairs frame"),
    ("pretrain", "manifest"),
    ("pretrain", "pairs index"),
    ("pretrain", "config"),
    ("pretrain", "checkpoint"),
    ("probe", "frame"),
    ("probe", "mask"),
    ("probe", "split list"),
    ("finetune", "frame"),
    ("finetune", "mask"),
    ("finetune", "split list"),
    ("propagate", "mask"),
    ("extract-pairs", "manifest"),
    ("pretrain", "tar shard"),
    ("pretrain", "run log"),
    ("extract-pairs", "pairs index"),
    ("extract-pairs", "record"),
}
NOT_APPLICABLE = {
    "non_utf8_name": "the layout fixes the name: renamed, the file is missing",
}


def cells():
    for command, rows in ROWS.items():
        for kind in rows:
            for mutation in KINDS[kind]:
                if mutation is non_utf8_name and (command, kind) in FIXED_NAMES:
                    continue
                yield pytest.param(
                    command,
                    kind,
                    mutation.__name__,
                    id=f"{command}-{kind}-{mutation.__name__}".replace(" ", "_"),
                )


def test_every_command_has_a_row():
    assert set(get_command(app).commands) == set(ROWS)


@pytest.mark.parametrize("command,kind,mutation", list(cells()))
def test_hostile_input(base, cell_runner, tmp_path, command, kind, mutation):
    d = tmp_path / "cell"
    shutil.copytree(base, d, symlinks=True)
    target, line = ROWS[command][kind]
    given = MUTATIONS[mutation](target(d), d)
    before = tree_digest(d)
    done = cell_runner(line(d, given))
    after = tree_digest(d)
    stderr = [x for x in done.stderr.splitlines() if x.strip()]
    expected = expected_exit(command, kind, mutation)
    report = f"exit {done.returncode}, stderr: {done.stderr[-2000:]}"
    print(f"CELL {command}|{kind}|{mutation}|{done.returncode}|{stderr[-1:]}")
    assert "Traceback" not in done.stderr, report
    assert done.returncode == expected, report
    if expected:
        assert len(stderr) == 1 and stderr[0].startswith("error: "), report
    written = set(after) ^ set(before)
    changed = {p for p in set(after) & set(before) if after[p] != before[p]}
    allowed = d / "run" if line(d, given)[1:3] == ["--out", d / "run"] else d / "out"
    if command == "extract-pairs" and kind in ("manifest", "pairs index", "record", "lock file"):
        allowed = d / "pairs"
    if kind == "next tar shard":
        allowed = d / "pairs-tar"
    outside = {p for p in written | changed if not p.is_relative_to(allowed)}
    assert not outside, f"written outside --out: {sorted(outside)[:5]}"


# Native decoders write to the process's own stderr, which the in-process cells cannot see: one
# cell per mutation runs again as a real process, where every byte of stderr counts.
REAL_PROCESS_ROWS = [
    ("visualize", "frame"),
    ("probe", "mask"),
    ("visualize", "video"),
    ("probe", "checkpoint"),
    ("pretrain", "pairs frame"),
    ("pretrain", "manifest"),
]


def real_process_cells():
    for name, mutation in MUTATIONS.items():
        command, kind = next(row for row in REAL_PROCESS_ROWS if mutation in KINDS[row[1]])
        yield pytest.param(command, kind, name, id=f"{command}-{kind}-{name}".replace(" ", "_"))


@pytest.mark.parametrize("command,kind,mutation", list(real_process_cells()))
def test_hostile_input_in_a_real_process(base, tmp_path, command, kind, mutation):
    d = tmp_path / "cell"
    shutil.copytree(base, d, symlinks=True)
    target, line = ROWS[command][kind]
    given = MUTATIONS[mutation](target(d), d)
    done = run_cacl_process(*line(d, given))
    stderr = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == expected_exit(command, kind, mutation), done.stderr[-2000:]
    if done.returncode:
        assert len(stderr) == 1 and stderr[0].startswith("error: "), done.stderr[-2000:]


class CellRunner:
    """Runs ``cacl ARGS`` in a worker process that imports cacl once; a cell that crashes the
    worker or outlasts ``ALARM_S`` gets a fresh worker and comes back as exit -1 with why."""

    def __init__(self) -> None:
        self.pool = self._new_pool()

    @staticmethod
    def _new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=get_context("forkserver"))

    def __call__(self, args: list) -> subprocess.CompletedProcess:
        future = self.pool.submit(run_cacl, *args)
        try:
            return future.result(timeout=ALARM_S)
        except BrokenProcessPool:
            why = "the worker process crashed (a segfault?)"
        except TimeoutError:
            why = f"blocked for {ALARM_S} s"
            for process in list((self.pool._processes or {}).values()):
                process.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._new_pool()
        return subprocess.CompletedProcess(args, -1, "", f"Traceback: {why}\n")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def cell_runner():
    runner = CellRunner()
    yield runner
    runner.close()


# Read by the loader once training has started: bad data there fails the run (exit 1).
MID_RUN = {("pretrain", "frame"), ("pretrain", "pairs frame"), ("pretrain", "tar shard")}


def expected_exit(command, kind, mutation):
    """The documented exit code of a cell (docs/reliability.md)."""
    if kind in ("lock file", "next tar shard"):
        return 2  # cacl writes no file through a link and opens no FIFO to write: refused
    if command == "extract-pairs" and kind in ("record", "pairs index"):
        return 0  # a damaged record is dropped and its clip done again; the index is rebuilt
    if kind == "run log" and mutation == "nested_deep":
        return 0  # a line no step can be read from is dropped, as a kill's torn line is
    if mutation in ("link_out_of_the_tree", "non_utf8_name"):
        return 0  # the user's own file, reached through their link or under any name
    if command == "extract-pairs" and kind == "video":
        return 0  # a bad video is skipped and listed in skipped.tsv, not an error
    if kind == "frame" and mutation in ("other_mode", "sixteen_bit"):
        return 0  # decoded to 8-bit RGB (a pairs frame is checked against its CRC-32 instead)
    if (command, kind, mutation) in SIZE_FREE:
        return 0  # an image folder pairs each image with itself; visualize feeds each frame alone
    if (kind, mutation) == ("tar shard", "wrong_header"):
        return 0  # frames are read at their recorded offsets: tar's own headers are not read
    if kind == "run log" and mutation in ("zero_bytes", "truncated", "wrong_header"):
        return 0  # lines no step can be read from are dropped, as a kill's torn line is
    if (kind, mutation) == ("video", "wrong_header"):
        return 0  # the container's index is further on: decoders read past the first bytes
    if (kind, mutation) == ("split list", "truncated") and command in ("probe", "finetune"):
        return 0  # a shorter list of whole ids (DAVIS's one name is cut in half: unknown)
    if (command, kind, mutation) == ("propagate", "mask", "ids_out_of_range"):
        return 0  # DAVIS ids are object numbers, with no class count to exceed
    if (kind, mutation) == ("preset", "zero_bytes") and command not in ("probe", "finetune"):
        return 0  # an empty preset is the defaults (whose world a --data folder contradicts)
    if (kind, mutation) == ("preset", "truncated") and command not in ("propagate", "finetune"):
        return 0  # the cut leaves 'base: NAME' whole; propagate's and finetune's cut the name
    return 1 if (command, kind) in MID_RUN else 2


SIZE_FREE = {("pretrain", "frame", "other_size"), ("visualize", "frame", "other_size")}

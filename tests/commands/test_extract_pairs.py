"""`cacl extract-pairs` on real clips with planted bad files; kill and resume; training from it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.commands.test_pretrain import one_line_error
from tests.conftest import fill_disk, run_cacl, sets

GOOD = ["01_dog.mp4", "04_coffee.mp4", "cockatoo.mp4", "realshort.mp4", "test.webm"]


@pytest.fixture
def video_tree(tmp_path, shared_data):
    """Real clips under class folders plus every kind of bad file."""
    root = tmp_path / "videos"
    (root / "animals").mkdir(parents=True)
    (root / "misc" / "deeper").mkdir(parents=True)
    for name in GOOD:
        target = root / ("animals" if name in ("01_dog.mp4", "cockatoo.mp4") else "misc/deeper")
        shutil.copy(shared_data / "videos" / name, target / name)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad / "truncated.mp4").write_bytes(
        (shared_data / "videos" / "realshort.mp4").read_bytes()[:30000]
    )
    (bad / "notes.avi").write_text("this is text")
    writer = cv2.VideoWriter(str(bad / "five.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    return root


def manifest(out):
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


def sequential_frame(path, index):
    """Independent reference: OpenCV reading frame by frame up to ``index``."""
    cap = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, frame = cap.read()
        assert ok
    cap.release()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def test_extracts_every_good_clip_and_reports_every_bad_file(tmp_path, video_tree):
    out = tmp_path / "pairs"
    result = run_cacl("extract-pairs", video_tree, "--out", out, "--workers", "2")
    assert result.returncode == 0, result.stderr
    records = {r["source"]: r for r in manifest(out)}
    assert {os.path.basename(s) for s in records} == set(GOOD)
    assert records["misc/deeper/test.webm"]["decoder"] == "opencv"  # decord refuses it
    assert records["animals/01_dog.mp4"]["decoder"] == "decord"
    report = (out / "skipped.tsv").read_text().splitlines()[1:]
    reasons = dict(line.split("\t") for line in report)
    assert set(reasons) == {
        "bad/empty.mp4",
        "bad/random.mp4",
        "bad/truncated.mp4",
        "bad/notes.avi",
        "bad/five.mp4",
    }
    assert (
        "0 bytes" in reasons["bad/empty.mp4"] and "too short: 5 frames" in reasons["bad/five.mp4"]
    )
    for source, record in records.items():
        ((first, second),) = record["indices"]
        assert second - first == 8
        written = cv2.cvtColor(cv2.imread(str(out / record["frames"][0][1])), cv2.COLOR_BGR2RGB)
        assert min(written.shape[:2]) == 256 or min(record["size"]) < 256
        reference = sequential_frame(video_tree / source, second)
        reference = cv2.resize(reference, written.shape[1::-1], interpolation=cv2.INTER_AREA)
        error = np.abs(written.astype(float) - reference.astype(float)).mean()
        assert error < 4.0, (source, error)  # JPEG noise only; a wrong frame is far off
        other = sequential_frame(video_tree / source, max(0, second - 8))
        other = cv2.resize(other, written.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(written.astype(float) - other.astype(float)).mean() > error


@pytest.mark.slow  # three extractions: about 15 s
def test_rerun_skips_done_clips_and_overwrite_redoes_them(tmp_path, video_tree):
    out = tmp_path / "pairs"
    assert run_cacl("extract-pairs", video_tree, "--out", out).returncode == 0
    again = run_cacl("extract-pairs", video_tree, "--out", out)
    assert "10 already done, 0 to extract" in again.stdout
    redo = run_cacl("extract-pairs", video_tree, "--out", out, "--overwrite")
    assert "0 already done, 10 to extract" in redo.stdout
    strict = run_cacl("extract-pairs", video_tree, "--out", out, "--strict")
    assert strict.returncode == 1


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_manifest(tmp_path, shared_data):
    videos = tmp_path / "many"
    videos.mkdir()
    for i in range(48):  # short clips: the kill comes after the third of them, the run goes on
        shutil.copy(shared_data / "videos" / "realshort.mp4", videos / f"clip{i:02d}.mp4")
    reference = tmp_path / "reference"
    assert run_cacl("extract-pairs", videos, "--out", reference, "--workers", "1").returncode == 0

    out = tmp_path / "killed"
    killed_after_records(
        start_extraction(videos, out, "--workers", "1", "--pairs-per-clip", "1"), out, 3
    )
    done_before = len(list((out / ".records").glob("*.json")))
    assert 3 <= done_before < 48 and not (out / "manifest.jsonl").exists()

    assert run_cacl("extract-pairs", videos, "--out", out, "--workers", "1").returncode == 0
    assert manifest(out) == manifest(reference)
    assert not list(out.rglob("*.tmp"))
    for record in manifest(out):
        for name in record["frames"][0]:
            assert cv2.imread(str(out / name)) is not None


def test_clip_ids_stay_inside_the_output(tmp_path):
    from cacl_cli.data.extract import clip_id

    root = tmp_path / "v"
    sneaky = clip_id(root, root / "x" / ".." / ".." / "etc" / "x.mp4")
    assert "/" not in sneaky and ".." not in sneaky and not sneaky.startswith(".")
    assert clip_id(root, root / "a b" / "c;d.mp4") == "a_b__c_d"
    assert "/" not in clip_id(root, root / "x" / "y" / "z.mp4")


def test_pretrain_reads_an_extracted_folder(tmp_path, video_tree):
    out = tmp_path / "pairs"
    assert run_cacl("extract-pairs", video_tree, "--out", out).returncode == 0
    run = run_cacl(
        "pretrain",
        "--data",
        out,
        "--out",
        tmp_path / "run",
        *sets("schedule.steps=2", "data.batch_size=4"),
    )
    assert run.returncode == 0, run.stderr
    assert "path: " + str(out) in (tmp_path / "run" / "config.yaml").read_text()


def test_pairs_share_the_crop_box_while_colours_differ(tmp_path, shared_data):
    from cacl_cli.config import section
    from cacl_cli.data.augment import PairAugment
    from cacl_cli.data.batches import StepBatches
    from cacl_cli.data.pairs import PairsFolder

    folder = tmp_path / "pairs"
    frame = cv2.imread(str(shared_data / "frames" / "bedroom" / "00000.jpg"))
    (folder / "c").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):  # both frames of the pair are the same picture
        cv2.imwrite(str(folder / "c" / name), frame)
    (folder / "manifest.jsonl").write_text(
        json.dumps({"cacl_pairs": 1})
        + "\n"
        + json.dumps({"clip": "c", "frames": [["c/a.jpg", "c/b.jpg"]]})
        + "\n"
    )

    def correlations(shared):
        augment = PairAugment(
            section("augment", blur_p=0.0, jitter_p=1.0, grayscale_p=0.0, shared_crop=shared), 64
        )
        v, v_plus = StepBatches(PairsFolder(folder), augment, 16, 8, seed=0).views(0)
        assert not np.allclose(v.numpy(), v_plus.numpy())  # colours are drawn per frame
        luma = lambda x: x.mean(1).flatten(1).numpy()  # noqa: E731
        return [np.corrcoef(a, b)[0, 1] for a, b in zip(luma(v), luma(v_plus))]

    shared, independent = correlations(True), correlations(False)
    assert min(shared) > 0.8  # same geometry: the pictures line up pixel for pixel
    assert np.median(independent) < np.median(shared) - 0.2


def test_a_link_in_the_output_leading_outside_is_not_followed(tmp_path, shared_data):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(shared_data / "videos" / "realshort.mp4", videos / "clip.mp4")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "clip").symlink_to(outside)  # a planted link where the clip's frames would go
    result = run_cacl("extract-pairs", videos, "--out", out)
    assert result.returncode == 0, result.stderr
    assert not list(outside.iterdir())
    assert "clip.mp4\t" in (out / "skipped.tsv").read_text()
    assert "is a link inside" in (out / "skipped.tsv").read_text()


def test_pretrain_reads_an_image_folder(tmp_path, shared_data):
    run = run_cacl(
        "pretrain",
        "--data",
        shared_data / "frames" / "bedroom",
        "--out",
        tmp_path / "r",
        *sets("schedule.steps=1", "data.batch_size=4"),
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.slow  # an extraction of many copies: about 15 s
def test_names_that_differ_only_in_punctuation_script_or_suffix_stay_apart(tmp_path, shared_data):
    videos = tmp_path / "v"
    videos.mkdir()
    source = shared_data / "videos" / "realshort.mp4"
    names = ["a b.mp4", "a_b.mp4", "日本.mp4", "中国.mp4", "clip.mp4", "clip.webm"]
    for name in names:
        shutil.copy(
            source if name != "clip.webm" else shared_data / "videos" / "test.webm", videos / name
        )
    out = tmp_path / "pairs"
    done = run_cacl("extract-pairs", videos, "--out", out, "--workers", "2", "--short-side", "64")
    assert done.returncode == 0, done.stderr
    records = manifest(out)
    assert sorted(r["source"] for r in records) == sorted(names)  # six in, six out
    assert len({r["clip"] for r in records}) == 6
    frames = [name for r in records for group in r["frames"] for name in group]
    assert len(set(frames)) == len(frames) and all((out / f).is_file() for f in frames)
    again = run_cacl("extract-pairs", videos, "--out", out, "--short-side", "64")
    assert "6 already done, 0 to extract" in again.stdout
    shutil.copy(source, videos / "a-b.mp4")  # a later video whose readable id is taken
    third = run_cacl("extract-pairs", videos, "--out", out, "--short-side", "64")
    assert "6 already done, 1 to extract" in third.stdout
    assert {r["clip"] for r in records} <= {r["clip"] for r in manifest(out)}  # ids are stable


def test_other_settings_into_an_extracted_folder_are_refused(tmp_path, shared_data):
    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(shared_data / "videos" / "realshort.mp4", videos / "a.mp4")
    out = tmp_path / "pairs"
    assert run_cacl("extract-pairs", videos, "--out", out, "--short-side", "64").returncode == 0
    before = (out / "manifest.jsonl").read_bytes()
    line = one_line_error(
        run_cacl("extract-pairs", videos, "--out", out, "--short-side", "64", "--stride", "4")
    )
    assert "extracted with stride 8, not 4" in line and "--overwrite" in line
    assert (out / "manifest.jsonl").read_bytes() == before
    redo = run_cacl(
        "extract-pairs", videos, "--out", out, "--short-side", "64", "--stride", "4", "--overwrite"
    )
    assert redo.returncode == 0 and manifest(out)[0]["stride"] == 4


@pytest.mark.slow  # an extraction into a full tmpfs, then a rerun: about 15 s
def test_a_full_disk_is_retried_not_recorded(small_tmpfs, shared_data):
    videos = small_tmpfs.parent / "v"
    videos.mkdir()
    for name in ("01_dog.mp4", "cockatoo.mp4", "realshort.mp4"):
        shutil.copy(shared_data / "videos" / name, videos / name)
    out = small_tmpfs / "pairs"
    out.mkdir()
    fill_disk(small_tmpfs, leave=4096)  # room for records and folders, not for frames
    full = run_cacl("extract-pairs", videos, "--out", out, "--workers", "2", "--short-side", "128")
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert full.stderr.count("\n") == 1 and "manifest.jsonl: could not write it" in full.stderr
    assert "No space left on device" in full.stderr and "3 of 3 clips failed" in full.stderr
    assert not list((out / ".records").glob("*.json"))  # nothing marked done or skipped
    (small_tmpfs / "filler").unlink()
    freed = run_cacl("extract-pairs", videos, "--out", out, "--workers", "2", "--short-side", "128")
    assert freed.returncode == 0, freed.stdout + freed.stderr
    assert "0 already done, 3 to extract" in freed.stdout and len(manifest(out)) == 3


# ---------------------------------------------------------------- at scale: shards, tar, index


def copies(folder, shared_data, n, name="cockatoo.mp4"):
    """``n`` copies of a shared video under three class folders, one with a dot in its name."""
    for i in range(n):
        target = folder / f"class{i % 3}" / (f"clip.{i:02d}.mp4" if i == 0 else f"clip{i:02d}.mp4")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "videos" / name, target)
    return folder


def start_extraction(videos, out, *args):
    """``cacl extract-pairs`` as a process of its own group (a kill reaches its workers)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cacl_cli",
            "extract-pairs",
            str(videos),
            "--out",
            str(out),
            *map(str, args),
        ],
        process_group=0,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def extracted(videos, out, *args):
    """``cacl extract-pairs VIDEOS --out OUT ARGS`` (one worker), which must succeed."""
    done = run_cacl("extract-pairs", videos, "--out", out, "--workers", "1", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def killed_after_records(proc, out, count):
    """SIGKILL an extraction (and its workers) once ``count`` clip records are on disk."""
    deadline = time.time() + 600  # a ceiling for a busy machine; progress ends the wait
    while (
        time.time() < deadline
        and proc.poll() is None
        and len(list((out / ".records").glob("*.json"))) < count
    ):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def records_per_shard(out, videos):
    from cacl_cli.data.extract import in_shard

    sources = [json.loads(p.read_text())["source"] for p in (out / ".records").glob("*.json")]
    return [sum(in_shard(s, (k, 2)) for s in sources) for k in (0, 1)]


def same_pairs(a, b):
    """Two pairs folders hold the same clips, draws and frame bytes (wherever they are kept)."""
    from cacl_cli.data.pairs import PairsFolder

    a, b = PairsFolder(a), PairsFolder(b)
    ids = [[index.clips[i] for i in range(len(index.clips))] for index in (a.index, b.index)]
    assert ids[0] == ids[1] and len(a) == len(b)
    assert np.array_equal(a.index.draw_start, b.index.draw_start)
    frames = len(a.index.frame_file)
    return all(a.frame_bytes(f) == b.frame_bytes(f) for f in range(frames))


@pytest.mark.slow  # per format: one extraction, two shards killed and rerun: about 40 s
@pytest.mark.parametrize("form", ["folder", "tar"])
def test_two_shards_at_once_each_killed_and_rerun_equal_one_run(tmp_path, shared_data, form):
    videos = copies(tmp_path / "videos", shared_data, 12, name="test.webm")  # 94 frames each
    common = ["--workers", "1", "--short-side", "64", "--format", form, "--shard-size", "0.02"]
    reference = tmp_path / "reference"
    assert run_cacl("extract-pairs", videos, "--out", reference, *common).returncode == 0
    out = tmp_path / "sharded"
    shards = [start_extraction(videos, out, "--shard", f"{k}/2", *common) for k in (0, 1)]
    deadline = time.time() + 300  # a busy machine is slow; progress, not a fixed wait, ends it
    while time.time() < deadline and (not out.is_dir() or min(records_per_shard(out, videos)) < 1):
        time.sleep(0.05)
    assert all(proc.poll() is None for proc in shards), "a shard finished before its kill"
    for proc in shards:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert min(records_per_shard(out, videos)) >= 1 and not (out / "manifest.jsonl").exists()
    recorded = sum(records_per_shard(out, videos))
    merged = run_cacl("extract-pairs", videos, "--out", out, "--merge", *common)
    assert merged.returncode == 0 and len(manifest(out)) == recorded, merged.stdout
    assert f"{12 - recorded} videos of the collection are in no shard's records" in " ".join(
        merged.stdout.split()
    )
    reruns = [start_extraction(videos, out, "--shard", f"{k}/2", *common) for k in (0, 1)]
    for proc in reruns:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert same_pairs(out, reference)
    mine, theirs = manifest(out), manifest(reference)
    if form == "folder":
        assert (out / "manifest.jsonl").read_bytes() == (reference / "manifest.jsonl").read_bytes()
    else:
        where = ("frames", "tar", "members")
        assert [{k: v for k, v in r.items() if k not in where} for r in mine] == [
            {k: v for k, v in r.items() if k not in where} for r in theirs
        ]
        for shard in out.glob("pairs-*.tar"):  # the killed ones were ended on the rerun
            assert subprocess.run(["tar", "tf", shard], capture_output=True).returncode == 0
    assert not list((out / ".records").glob("*")) and not list(out.rglob("*.tmp"))


@pytest.mark.slow  # two extractions and a short pretrain: about 20 s
def test_tar_pairs_equal_folder_pairs_and_pretrain_reads_them(tmp_path, video_tree):
    from cacl_cli.data.pairs import PairsFolder

    for form in ("folder", "tar"):
        done = run_cacl("extract-pairs", video_tree, "--out", tmp_path / form, "--format", form)
        assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "tar").glob("*/*.jpg")) and list((tmp_path / "tar").glob("*.tar"))
    assert same_pairs(tmp_path / "tar", tmp_path / "folder")
    folder, tar = PairsFolder(tmp_path / "folder"), PairsFolder(tmp_path / "tar")
    for seed in range(6):
        for a, b in zip(
            folder.pair(np.random.default_rng(seed), 8), tar.pair(np.random.default_rng(seed), 8)
        ):
            assert np.array_equal(a, b)
    run = run_cacl(
        "pretrain",
        "--data",
        tmp_path / "tar",
        "--out",
        tmp_path / "run",
        *sets("schedule.steps=2", "data.batch_size=4", "data.num_workers=2"),
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.slow  # three extractions of a few short clips: about 15 s
def test_a_rerun_reads_only_the_records_it_has_to(tmp_path, shared_data, monkeypatch):
    from cacl_cli.data import manifest as bookkeeping

    videos = copies(tmp_path / "videos", shared_data, 4, "realshort.mp4")
    out = tmp_path / "pairs"
    assert run_cacl("extract-pairs", videos, "--out", out, "--stride", "2").returncode == 0
    reads = []
    real = bookkeeping.read_record
    monkeypatch.setattr(bookkeeping, "read_record", lambda p: reads.append(p) or real(p))
    again = run_cacl("extract-pairs", videos, "--out", out, "--stride", "2")
    assert "0 to extract" in again.stdout and reads == []
    for name in ("new1.mp4", "new2.mp4"):
        shutil.copy(shared_data / "videos" / "realshort.mp4", videos / name)
    more = run_cacl("extract-pairs", videos, "--out", out, "--stride", "2")
    assert "2 to extract" in more.stdout and len(reads) == 2 and len(manifest(out)) == 6


@pytest.mark.parametrize(
    "args,env,expected",
    [
        (["--shard", "2/2"], {}, "--shard 2/2: give K/N with 0 <= K < N"),
        (["--shard", "x"], {}, "--shard x: give K/N"),
        (["--shard", "slurm"], {}, "SLURM_ARRAY_TASK_ID is not set"),
        (["--shard", "0/2", "--overwrite"], {}, "--overwrite redoes the whole folder"),
        (["--merge"], {}, "holds no extraction (no manifest.jsonl, no .records/)"),
    ],
)
def test_bad_shards_are_refused_before_anything_is_written(tmp_path, args, env, expected):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"")
    done = run_cacl("extract-pairs", tmp_path / "v", "--out", tmp_path / "out", *args, env=env)
    assert done.returncode == 2 and expected in one_line_error(done)
    assert not (tmp_path / "out").exists()


def test_a_slurm_array_task_is_its_shard(tmp_path, shared_data, monkeypatch):
    videos = copies(tmp_path / "videos", shared_data, 1, "realshort.mp4")
    for name, value in {
        "SLURM_ARRAY_TASK_ID": "7",
        "SLURM_ARRAY_TASK_MIN": "6",
        "SLURM_ARRAY_TASK_COUNT": "3",
    }.items():
        monkeypatch.setenv(name, value)
    done = run_cacl(
        "extract-pairs", videos, "--out", tmp_path / "o", "--shard", "slurm", "--stride", "2"
    )
    assert done.returncode == 0, done.stderr
    assert "in shard 1 of 3" in done.stdout


def test_a_record_missing_a_field_is_redone_not_a_traceback(tmp_path, shared_data):
    videos = copies(tmp_path / "videos", shared_data, 2, "realshort.mp4")
    out = tmp_path / "pairs"
    (out / ".records").mkdir(parents=True)
    (out / ".records" / "class0__clip.00.json").write_text(
        '{"clip": "class0__clip.00", "source": "class0/clip.00.mp4"}'
    )  # no status
    done = run_cacl("extract-pairs", videos, "--out", out, "--stride", "2")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "2 to extract" in done.stdout and len(manifest(out)) == 2


def _grandchildren(pid):
    """The processes two generations below ``pid``: the workers its forkserver started."""

    def children(p):
        try:
            return [int(c) for c in open(f"/proc/{p}/task/{p}/children").read().split()]
        except OSError:
            return []

    return [g for c in children(pid) for g in children(c)]


@pytest.mark.slow
def test_a_worker_killed_mid_clip_costs_no_clip_and_no_hang(tmp_path, shared_data):
    videos = copies(tmp_path / "videos", shared_data, 12)
    reference = tmp_path / "reference"
    assert run_cacl("extract-pairs", videos, "--out", reference, "--workers", "2").returncode == 0
    out = tmp_path / "out"
    proc = start_extraction(videos, out, "--workers", "2")
    deadline = time.monotonic() + 600  # a ceiling for a busy machine; progress ends the wait
    while (
        proc.poll() is None
        and time.monotonic() < deadline
        and not list((out / ".records").glob("*.json"))
    ):
        time.sleep(0.02)
    workers = _grandchildren(proc.pid)
    assert workers and proc.poll() is None, "no worker found mid-run"
    os.kill(workers[0], signal.SIGKILL)  # busy with its next clip, as the OOM killer finds it
    try:
        code = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the extraction hung on the killed worker's clip")  # multiprocessing.Pool
    assert code == 0 and manifest(out) == manifest(reference)

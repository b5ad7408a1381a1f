"""Every benchmark under bench/ runs in a quick mode, so none of them can rot unnoticed.

Quick modes check the plumbing (the script runs, writes what it promises, resumes); their
numbers mean nothing.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHARED_DATA

pytestmark = pytest.mark.slow  # every benchmark's quick mode, each a process

BENCH = ROOT / "bench"


def bench(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_learning_benchmark_writes_raw_results_table_and_plot_and_resumes(tmp_path):
    methods = ["--methods", "random init", "MoCo-v2", "CACL", "--jobs", "2", "--out", tmp_path]
    out = bench(BENCH / "learning.py", "--quick", *methods)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    probes = [r for r in records if r["kind"] == "probe"]
    assert {(r["method"], r["step"]) for r in probes} == {
        ("random init", 0),
        ("MoCo-v2", 2),
        ("CACL", 2),
    }
    assert all(0 <= r["miou"] <= 1 for r in probes)
    cacl = next(r for r in probes if r["method"] == "CACL")
    assert 0 <= cacl["truth"]["truth/cycle_jump_roll_offset"] <= 1  # diagnostics reach the table
    davis = {r["method"]: r["davis_jf_x100"] for r in records if r["kind"] == "davis"}
    if SHARED_DATA.is_dir():  # the real-video yardstick on blackswan's first frames
        assert set(davis) == {"random init", "MoCo-v2", "CACL"}
        assert all(0 <= j <= 100 for j in davis.values())
    world = {r["method"]: r["world_jf_x100"] for r in records if r["kind"] == "world"}
    assert set(world) == {"random init", "MoCo-v2", "CACL"}  # the world's clips need no data
    assert all(0 <= j <= 100 for j in world.values())
    assert (
        sorted(p.name for p in (tmp_path / "world-davis" / "JPEGImages" / "480p").iterdir())
        == ["world_0000", "world_0001"]
        and not (tmp_path / "world-davis.partial").exists()
    )
    table = (tmp_path / "table.md").read_text()
    assert "world propagation J&F x100" in table  # the column, and its protocol in the header:
    protocol = "(propagate-cpu, propagate.frames=3, propagate.size=64)"
    assert f"world propagation J&F {protocol} on 2 held-out clips at 64 px" in table
    shipped = "G P C (P C on layer4 + 1-block neck)"  # tiny-world's neck, named in the row
    assert f"| CACL | {shipped} | independent | position | reroll | 64 / 64 / 16 |" in table
    assert "| MoCo-v2 | G | off | - | - | 64 / - / - |" in table
    assert "Command: python bench/learning.py" in table
    assert (tmp_path / "probe-vs-steps.png").stat().st_size > 1000
    assert (tmp_path / "yardsticks.png").stat().st_size > 1000
    assert "learning benchmark" in out
    # a rerun finds every probe done: nothing is trained or probed again
    bench(BENCH / "learning.py", "--quick", *methods)
    again = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(again) == len(records)


def test_step_speed_reports_each_variant_against_the_floor():
    out = bench(BENCH / "step_speed.py", "--quick")
    rows = {line.split("  ")[0]: line.split()[-8:] for line in out.splitlines()[3:8]}
    assert list(rows) == ["floor", "MoCo-v2", "two heads", "CACL", "LARS"]
    gflops = {name: float(row[2]) for name, row in rows.items() if name != "LARS"}
    ops = {name: int(row[-1]) for name, row in rows.items()}
    # the heads only add work, so each variant counts more FLOPs and operators than the one before
    assert 0 < gflops["floor"] < gflops["MoCo-v2"] < gflops["two heads"] < gflops["CACL"]
    assert 0 < ops["floor"] < ops["MoCo-v2"] < ops["two heads"] < ops["CACL"]
    assert float(rows["floor"][4]) == 1.0  # the floor's efficiency ratio is 1 by definition
    assert "efficiency ratio" in out and "CACL vs MoCo-v2:" in out


@pytest.mark.slow
def test_step_speed_times_an_older_commit_side_by_side():
    parent = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD~1"], capture_output=True)
    if parent.returncode:
        pytest.skip("needs a git checkout with history (HEAD~1)")
    out = bench(
        BENCH / "step_speed.py", "--quick", "--steps", "1", "--repeats", "1", "--against", "HEAD~1"
    )
    rows = [
        line.split()
        for line in out.splitlines()
        if line.startswith(("this tree ", "HEAD~1 ")) and " against " not in line
    ]
    assert [row[0] for row in rows] == ["this", "HEAD~1"]
    assert all(float(value.rstrip("x")) > 0 for row in rows for value in row[-5:])
    assert "faster than at HEAD~1" in out


def test_world_speed_reports_frames_and_loader_rates():
    out = bench(BENCH / "world_speed.py", "--quick")
    assert "frames/s" in out and "tiny-world loader" in out


def test_probe_cache_compares_cached_and_uncached_epochs():
    out = bench(BENCH / "probe_cache.py", "--width", "8", "--images", "8", "--epochs", "2")
    assert "x" in out.lower() and "cached" in out.lower()


def test_extract_speed_compares_with_naive_decoding(shared_data):
    out = bench(BENCH / "extract_speed.py", "--copies", "1", "--repeats", "1")
    assert "naive" in out.lower()


def test_cycle_health_runs_its_table(tmp_path):
    out = bench(BENCH / "cycle_health.py", "--steps", "2", "--out", tmp_path)
    assert "spread" in out


@pytest.fixture
def shared_data():
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


def test_roll_matching_reports_each_scheme_against_chance():
    out = bench(BENCH / "roll_matching.py", "--sizes", "64", "--pairs", "2", "--seeds", "0")
    lines = [line.split() for line in out.splitlines() if line.startswith("  64")]
    assert [row[1] for row in lines] == ["independent", "shared", "off"]
    assert all(0 <= float(v) <= 1 for row in lines for v in row[2:])


def test_davis_table_scores_baselines_and_resumes(tmp_path, shared_data):
    bench(BENCH / "davis_table.py", "--quick", "--out", tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == ["copy", "colour", "random init"]
    assert all(0 <= r["J&F_x100"] <= 100 for r in rows)
    assert rows[0]["J&F_x100"] > rows[2]["J&F_x100"]
    table = (tmp_path / "table.md").read_text()
    assert "| copy |" in table and "3 rows measured" in table
    assert all(r["commit"] and r["measured"] and r["cpu"] for r in rows)  # where each comes from
    bench(BENCH / "davis_table.py", "--quick", "--out", tmp_path)  # resumes: nothing is redone
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "table.md").read_text() == table  # its header still tells the measuring run


def test_feature_spread_reports_random_init_without_a_learning_folder(tmp_path, shared_data):
    out = bench(BENCH / "feature_spread.py", "--learning", tmp_path, "--size", "64")
    row = next(line.split() for line in out.splitlines() if line.startswith("random init"))
    assert len(row) == 6 and all(-1 <= float(v) <= 1 for v in row[2:])
    assert 0 <= float(row[-1]) <= 1  # one-step propagation: a balanced accuracy
    assert "neighbour" in out and "one-step" in out


def test_world_propagation_scores_the_copy_baseline_and_random_init():
    layer = ["--propagate-set", "propagate.layer=layer3"]
    out = bench(BENCH / "world_propagation.py", "--quick", "--seeds", "0", "1", *layer)
    assert "with propagate.layer=layer3" in out.splitlines()[0]
    rows = {line[:40].strip(): line[40:].split() for line in out.splitlines()[1:]}
    assert set(rows) == {"copy baseline", "random init"}
    seeds = [float(v.rstrip(",")) for v in rows["random init"][:2]]
    assert all(0 < v <= 100 for v in seeds) and seeds[0] != seeds[1]  # one backbone per seed


def test_davis_speed_times_each_tree_and_compares_their_masks(tmp_path, shared_data):
    """This tree in float32 against itself in bf16, three frames of blackswan at 64 px: the
    timing table with each row's precision, then the masks compared pixel by pixel and both
    scored x100."""
    out = bench(
        BENCH / "davis_speed.py",
        "--no-against",
        "--amp",
        "off",
        "--other-precision",
        "--davis",
        shared_data / "davis-2016",
        "--seq",
        "blackswan",
        "--frames",
        "3",
        "--preset",
        "propagate-cpu",
        "--width",
        "8",
        "--out",
        tmp_path,
    )
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    table = {
        line[:18].strip(): line[18:].split()
        for line in out.splitlines()
        if line.startswith("this tree")
    }  # the timing table's rows
    assert table["this tree"][0] == "float32" and table["this tree, bf16"][0] == "bfloat16"
    assert float(table["this tree, bf16"][1]) > 0  # its total seconds
    agree, ours, other = (float(v) for v in rows["blackswan"][1:4])
    assert 90 <= agree <= 100 and 0 <= ours <= 100 and 0 <= other <= 100
    assert sorted(p.name for p in (tmp_path / "this-tree-bf16" / "blackswan").glob("*.png")) == [
        "00000.png",
        "00001.png",
        "00002.png",
    ]


def test_same_training_finds_identical_runs_identical_and_a_changed_one_different(tmp_path):
    """The comparison the regroup rests on: two runs of one command compare identical, and a
    run with another seed is reported with the tensors that differ."""
    spec = importlib.util.spec_from_file_location("same_training", BENCH / "same_training.py")
    same_training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(same_training)
    tiny = [
        "--preset",
        "tiny-world",
        "--set",
        "model.width=8",
        "--set",
        "data.size=32",
        "--set",
        "world.size=40",
        "--set",
        "data.batch_size=8",
    ]
    runs = [tmp_path / name for name in ("a", "b", "c")]
    for run, seed in zip(runs, (0, 0, 1)):
        same_training.train(ROOT, [*tiny, "--set", f"run.seed={seed}"], run, steps=2)
    assert same_training.compare(runs[0], runs[1])[0] == []
    problems, count = same_training.compare(runs[0], runs[2])
    assert count > 100 and any("differs" in p for p in problems)


def test_real_video_extracts_a_variant_and_keeps_its_ledger(tmp_path, shared_data):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--quick", "--variants", "novel", "--out", out, "--work", work]
    text = bench(BENCH / "real_video.py", *args, timeout=600)
    records = [json.loads(line) for line in (out / "novel" / "results.jsonl").open()]
    assert {r["kind"] for r in records} == {"probe", "davis"}  # no world clips: real video
    recipe = json.loads((out / "novel" / "recipe.json").read_text())["recipe"]
    assert len(recipe["bench"]["pairs"]) == 1 and "data.path" not in recipe["pretrain/CACL"]
    assert (work / "novel" / "pairs" / "manifest.jsonl").is_file()
    assert (work / "novel" / "videos" / "bedroom").is_dir()  # the frame folder, as links
    baselines = {r["row"]: r for r in map(json.loads, (out / "baselines" / "results.jsonl").open())}
    assert baselines["random init"]["precision"] == "float32"  # as the ledger's cells
    assert baselines["copy"]["precision"] == "-"
    summary = (out / "summary.md").read_text()
    assert "| copy baseline |" in summary and "| CACL | no DAVIS frame seen |" in summary
    assert "CACL - MoCo-v2 per seed" in text


def _load_real_video():
    spec = importlib.util.spec_from_file_location("real_video", BENCH / "real_video.py")
    real_video = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_video)
    return real_video


def test_real_videos_targets_follow_the_rule_written_before_the_runs():
    """Least that counts: the mean above the world-pretrained CACL and above random init by more
    than the larger seed sd of the two; the moonshot: above the colour baseline."""
    real_video = _load_real_video()
    novel = real_video.LABELS["novel"]

    def rows(moco: dict, cacl: dict) -> list[dict]:
        return [
            {"name": "colour baseline", "data": "-", "values": {0: 44.19}},
            {"name": "CACL", "data": real_video.WORLD_LABEL, "values": {0: 34.0, 1: 35.0}},
            {"name": "random init", "data": "-", "values": {0: 25.0, 1: 23.0, 2: 24.0}},
            {"name": "MoCo-v2", "data": novel, "values": moco},
            {"name": "CACL", "data": novel, "values": cacl},
        ]

    lines = real_video.targets(rows({0: 21.0, 1: 22.0, 2: 21.5}, {0: 36.0, 1: 37.0, 2: 36.5}))
    moco, cacl = (line for line in lines if line.startswith(("| MoCo-v2", "| CACL")))
    assert "| not met |" in moco and "| met |" in cacl and cacl.endswith("| no (44.19) |")
    # above the world CACL (mean 35 > 34.5), above random init by 11 but the seed sd is 14.5
    spread = real_video.targets(rows({0: 20.0, 1: 36.0, 2: 49.0}, {0: 36.0, 1: 37.0, 2: 36.5}))
    assert "| not met |" in next(line for line in spread if line.startswith("| MoCo-v2"))
    above = real_video.targets(rows({0: 45.0, 1: 46.0, 2: 45.5}, {0: 36.0, 1: 37.0, 2: 36.5}))
    assert next(line for line in above if line.startswith("| MoCo-v2")).endswith("| yes (44.19) |")
    assert real_video.targets(rows({}, {})[:2]) == []  # no random init yet: nothing to judge


def test_real_videos_second_variant_holds_the_davis_frames_as_frame_folders(tmp_path):
    """The davis-seen collection: links to every DAVIS-2016 frame, one folder a sequence, and
    no mask among them."""
    real_video = _load_real_video()
    sources = real_video.VARIANTS["davis-seen"][0]
    if not all(path.exists() for path in sources):
        pytest.skip(f"real test data not found at {real_video.SHARED}")
    folder = real_video.collection(sources, tmp_path / "videos")
    sequences = [p for p in folder.iterdir() if p.is_dir() and p.name not in ("videos", "bedroom")]
    assert len(sequences) == 10 and all(any(s.glob("*.jpg")) for s in sequences)
    assert not list(folder.rglob("*.png")) and all(p.is_symlink() for p in folder.rglob("*.jpg"))


def test_real_video_methods_takes_a_share_of_each_variants_cells(tmp_path, monkeypatch):
    """--methods keeps the variant's own seeds and order, and only the methods named; a method
    the variant does not hold is not added (random init is only in the novel variant)."""
    real_video = _load_real_video()
    commands = []
    monkeypatch.setattr(real_video, "pairs", lambda *args: tmp_path / "pairs")
    monkeypatch.setattr(real_video.learning, "main", lambda command: commands.append(command) or 0)
    args = real_video.parse_args(["--methods", "random init", "CACL", "--work", str(tmp_path)])
    for variant in args.variants:
        assert real_video.run_variant(variant, args) == 0

    def listed(command: list[str], flag: str) -> list[str]:
        start = command.index(flag) + 1
        return command[
            start : next(i for i in range(start, len(command)) if command[i][:2] == "--")
        ]

    novel, seen = commands
    assert listed(novel, "--methods") == ["random init", "CACL"] and listed(seen, "--methods") == [
        "CACL"
    ]
    assert listed(novel, "--seeds") == ["0", "1", "2"] and listed(seen, "--seeds") == ["0"]

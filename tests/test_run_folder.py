"""run_folder.py: the one place a pretrain run's layout is spelled."""

from cacl_cli.run_folder import RunFolder, checkpoint_name, checkpoint_step


def test_every_file_of_a_run_has_its_place_in_the_folder(tmp_path):
    run = RunFolder(tmp_path)
    places = [
        run.config,
        run.metrics,
        run.metrics_table,
        run.events,
        run.checkpoints,
        run.export,
        run.lock,
        run.latest,
        run.checkpoint(20),
    ]
    assert all(p.is_relative_to(tmp_path) for p in places) and len(set(places)) == len(places)
    assert (
        run.checkpoint(20)
        == run.checkpoints / "step-0000020.pt"
        == run.checkpoints / (checkpoint_name(20))
    )
    assert run.latest.parent == run.checkpoints


def test_checkpoint_names_give_their_steps_and_other_names_none():
    assert checkpoint_step("step-0000300.pt") == 300 and checkpoint_step("step-12.pt") == 12
    for name in ("latest", "step-.pt", "step-1.pt.tmp", ".step-0000001.pt.x.tmp", "step-a.pt"):
        assert checkpoint_step(name) is None


def test_checkpoint_files_are_ordered_by_step_not_by_name(tmp_path):
    run = RunFolder(tmp_path)
    run.checkpoints.mkdir()
    for name in ("step-900.pt", "step-0000100.pt", "step-20.pt", "latest", "notes.txt"):
        (run.checkpoints / name).write_text("x")
    assert [p.name for p in run.checkpoint_files()] == [
        "step-20.pt",
        "step-0000100.pt",
        "step-900.pt",
    ]


def test_a_run_is_told_by_its_checkpoints_or_its_log_and_holds_its_checkpoints(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert not run.is_run()
    run.checkpoints.mkdir(parents=True)
    run.checkpoint(2).write_text("x")
    assert run.is_run() and RunFolder.holding(run.checkpoint(2)) == run
    assert RunFolder.holding(tmp_path / "loose.pt") is None
    logged = RunFolder(tmp_path / "logged")
    logged.root.mkdir()
    logged.metrics.write_text("")
    assert logged.is_run()

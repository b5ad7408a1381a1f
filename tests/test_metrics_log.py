"""metrics_log.py: the run's records in metrics.jsonl, metrics.csv and event files."""

import json
import sys

from cacl_cli.metrics_log import MetricsLog
from cacl_cli.run_folder import RunFolder


def test_without_the_tensorboard_extra_the_log_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    notes = []
    log = MetricsLog(RunFolder(tmp_path), events=True, note=notes.append)
    log.write({"step": 1, "loss": 1.0})
    log.write({"step": 2, "loss": 0.5})
    assert len(notes) == 1 and "tensorboard extra is not installed" in notes[0]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "tensorboard").exists()


def test_a_resume_drops_the_records_past_its_step_and_any_line_a_kill_tore(tmp_path):
    run = RunFolder(tmp_path)
    log = MetricsLog(run)
    for step in (10, 20, 30):
        log.write({"step": step, "loss": 1.0 / step})
    with open(run.metrics, "a") as fh:
        fh.write('{"step": 40, "lo')  # a kill in the middle of an append
    again = MetricsLog(run)
    again.truncate_after(20)
    assert [r["step"] for r in again.records()] == [10, 20]
    assert run.metrics_table.read_text().splitlines() == ["step,loss", "10,0.1", "20,0.05"]
    again.write({"step": 30, "loss": 0.5, "new": 1})  # a key the first record lacked
    assert json.loads(run.metrics.read_text().splitlines()[-1])["new"] == 1
    assert run.metrics_table.read_text().splitlines()[-1] == "30,0.5"

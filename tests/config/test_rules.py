"""config/rules.py: what a resumed run may change, and the refusal of what it may not."""

from pathlib import Path

import pytest

from cacl_cli.config import resolve, resumed_config
from cacl_cli.errors import CaclError


def test_the_resume_refusal_names_every_key_that_differs_not_only_the_first():
    saved = resolve("tiny-world", ["optim.lr=2.0", "loss.tau=0.1"])
    asked = resolve("tiny-world", ["optim.lr=3.0"])  # loss.tau left out, optim.lr changed
    with pytest.raises(CaclError) as refused:
        resumed_config(saved, asked, Path("run/config.yaml"))
    message = str(refused.value)
    assert message.startswith("2 key(s) differ from the run being resumed (run/config.yaml)")
    assert "'loss.tau' is 0.07 here but 0.1 in the run" in message
    assert "'optim.lr' is 3.0 here but 2.0 in the run" in message


def test_safe_keys_are_taken_and_run_amp_auto_keeps_the_runs_precision():
    saved = resolve("tiny-world", ["run.amp=bf16"])
    kept = resumed_config(saved, resolve("tiny-world", ["schedule.steps=900"]), Path("c.yaml"))
    assert kept.schedule.steps == 900 and kept.run.amp == "bf16"
    told = resumed_config(saved, resolve("tiny-world", ["run.amp=off"]), Path("c.yaml"))
    assert told.run.amp == "off"

"""Every experiment and study config, composed with no overrides through the entry point its header
names: it runs (here: builds everything and reaches training), or stops with one `error:` line and
exit status 2; never a traceback (a required value left unset included)."""

from __future__ import annotations

import re

import lightning as L
import pytest

from tests.conftest import ROOT, compose_config


class Reached(Exception):
    """Raised where training would start: everything before it was built without error."""


def _configs(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def _entry(group: str, name: str) -> str:
    header = (ROOT / "conf" / group / f"{name}.yaml").read_text()
    found = re.search(r"python (train|search|study)\.py", header)
    assert found, f"conf/{group}/{name}.yaml: its header names no command"
    return found.group(1)


def _outcome(capsys, action) -> str:
    """'reached' when the run got to training, else its one error line (asserted to be one)."""
    from nas.cli import user_errors

    try:
        with user_errors():
            action()
    except Exception as err:  # Hydra wraps what a study's target raises in its own error
        if isinstance(err, Reached) or isinstance(err.__cause__, Reached):
            return "reached"
        raise
    except SystemExit as stop:
        assert stop.code == 2
        errors = [
            line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")
        ]
        assert len(errors) == 1, errors
        return errors[0]
    return "finished"


@pytest.fixture
def no_training(monkeypatch):
    """Training, in this process or in the ones a study starts, stops where it would begin."""
    from nas.report.studies import comparison

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(L.Trainer, "fit", reached)
    monkeypatch.setattr(comparison, "run_script", reached)


@pytest.mark.slow
@pytest.mark.parametrize("name", _configs("experiment"))
def test_every_experiment_runs_or_stops_with_one_error_line(name, tmp_path, capsys, no_training):
    import search
    import train

    entry = _entry("experiment", name)
    cfg = compose_config(entry, [f"experiment={name}"], tmp_path)
    outcome = _outcome(capsys, lambda: (train.train if entry == "train" else search.run)(cfg))
    assert outcome == "reached" or outcome.startswith("error: "), outcome


@pytest.mark.parametrize("name", _configs("study"))
def test_every_study_runs_or_stops_with_one_error_line(name, tmp_path, capsys, no_training):
    import study

    assert _entry("study", name) == "study"
    # only where it writes is given: a study's default out_dir is relative to the working directory
    cfg = compose_config("study", [f"study={name}", f"study.out_dir={tmp_path}"], tmp_path)
    outcome = _outcome(capsys, lambda: study.run(cfg))
    assert outcome == "reached" or outcome.startswith("error: "), outcome

"""A new space, method and strategy from files under tests/ only (`tests/toy_nas/`), trained,
searched and retrained through the real entry points, each a process of its own: nothing in
`nas/` or `conf/` names them, so this fails if a seam needs an edit for a new method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas.results.store import ResultsStore
from tests.conftest import ROOT

SEARCHPATH = f"hydra.searchpath=[file://{ROOT / 'tests' / 'toy_nas' / 'conf'}]"


def _run(script: str, *overrides: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, script, SEARCHPATH, *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_nothing_in_the_package_names_the_toy_method_or_space():
    for folder in ("nas", "conf"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml"):
                text = path.read_text()
                assert "toy_nas" not in text and "ToyModule" not in text, path


@pytest.mark.slow
def test_a_toy_method_on_a_toy_space_trains_searches_and_retrains(tmp_path):
    run = tmp_path / "supernet"
    _run("train.py", "experiment=toy", f"hydra.run.dir={run}")
    ckpt = run / "checkpoints" / "last.ckpt"
    raw = __import__("torch").load(ckpt, weights_only=False)
    assert raw["module_class"] == "tests.toy_nas.method.ToyModule" and raw["method"] == "toy"
    counts = raw["state_dict"]["counts"]  # the method's own sampler: every op trained in turn
    assert (
        counts.sum().item() == 2 * 4 * 2
        and (counts.max(1).values - counts.min(1).values).max() <= 1
    )

    # the toy strategy, found by its _target_: all 9 architectures once, none twice
    _run(
        "search.py",
        "experiment=toy",
        "strategy=shuffled",
        f"ckpt={ckpt}",
        "search.num_archs=9",
        "selection.k=2",
    )
    out = run / "search" / "shuffled-seed0"
    with ResultsStore(out / "results.sqlite") as store:
        assert store.count() == 9 and store.get_meta("settings")["strategy"] == "shuffled"
        assert store.get_meta("space_spec")["module"] == "tests.toy_nas"
    top = (out / "selections" / "top.txt").read_text().split()[0]

    retrain = tmp_path / "standalone"
    _run("train.py", "experiment=toy_standalone", f"arch={top}", f"hydra.run.dir={retrain}")
    result = json.loads((retrain / "result.json").read_text())
    assert result["arch_id"] in Path(top).name  # the architecture that was selected
    assert result["kind"] == "StandaloneModule" and result["test_acc"] is not None

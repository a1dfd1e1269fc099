"""benchmarks/gpu_check.py --smoke: the GPU check's code paths at tiny sizes on the CPU, so the run
on a lent GPU exercises nothing untested."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["1. CUDA tests", "2. Throughput", "3. Real-data run", "4. Targets"]


# one smoke run (about a minute on 2 cores) serves every test of this file
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return (out / "report.md").read_text(), json.loads((out / "report.json").read_text())


def positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_report_has_every_section_and_a_header(smoke_report):
    markdown, data = smoke_report
    for title in SECTIONS:
        assert f"## {title}" in markdown
    assert "not run" not in markdown
    assert set(data["sections"]) == {"cuda_tests", "throughput", "real_data", "targets"}
    for key in ("hardware", "torch", "date"):
        assert data["header"][key]


def test_cuda_tests_summary_is_recorded(smoke_report):
    tests = smoke_report[1]["sections"]["cuda_tests"]
    assert tests["returncode"] == 0
    assert "skipped" in tests["summary"]  # no CUDA here: the tests skip, and the line says so


def test_throughput_numbers_are_finite_and_positive(smoke_report):
    rows = smoke_report[1]["sections"]["throughput"]["rows"]
    expected = ["supernet F=4 eager", "supernet F=4 compile", "supernet F=8 eager"]
    expected += ["ranking batch_archs=1 (auto)", "stand-alone child", "GDAS step (cifar_gdas)"]
    expected += ["DARTS step (cifar_darts)", "ENAS step (cifar_enas_micro)"]
    for name in expected:
        assert name in rows
    # the CPU's speed swings with its other load: a time-capped row is recorded, not a failure,
    # but the eager supernet, ranking and stand-alone rows (the targets' inputs) must be measured
    for name in ["supernet F=4 eager", "ranking batch_archs=1 (auto)", "stand-alone child"]:
        assert positive(rows[name]["rate"]) and positive(rows[name]["step_ms"]), rows[name]
    for row in rows.values():
        assert "error" in row or (positive(row["rate"]) and row["peak_mib"] is None)
        # a time cap or a skip is recorded; a config the check composes wrongly is a failure
        assert not row.get("error", "").startswith("NasError"), row


def test_real_data_run_checks_its_losses_and_implies_epoch_times(smoke_report):
    real = smoke_report[1]["sections"]["real_data"]
    assert positive(real["img_s"]) and positive(real["step_ms"])
    assert real["agree"] and real["compared"] >= 2  # the CPU path twice: equal to 1e-5
    assert all(math.isfinite(x) for x in real["losses"] + real["cpu_losses"])
    assert set(real["epochs"]) == {"cifar_oneshot", "cifar_darts", "cifar_enas_micro"}
    oneshot = real["epochs"]["cifar_oneshot"]
    assert oneshot["batch_size"] == 1024 and oneshot["steps"] == 45_000 // 1024
    assert positive(oneshot["epoch_s"])


def test_target_lines_are_present(smoke_report):
    markdown, data = smoke_report
    rows = data["sections"]["targets"]["rows"]
    assert len(rows) == 3
    assert all(row["status"] == "n/a (cpu smoke)" for row in rows)
    for text in (">= 8,000 img/s", "<= 10 min", ">= 20,000 img/s"):
        assert text in markdown

"""NAS-Bench-201 as the truth: a small benchmark file in the official format, built with the
package's own classes, and the nb201 space's strings read by the package's parser."""

from __future__ import annotations

import itertools
import json
import random
import sys

import numpy as np
import pytest
import torch
from scipy import stats as sps

from nas.errors import NasError
from nas.report.quality.cli import main
from nas.report.quality.nb201 import check_space, load_benchmark
from nas.results.store import ResultsStore
from nas.spaces import build_space
from nas.spaces.nb201 import EDGES, NB201_OPS, NB201Space

api_module = pytest.importorskip("nas_201_api")
SEEDS = (777, 888)
EPOCHS = 2


def official_strings(ops=NB201_OPS) -> list[str]:
    """Every cell string in the benchmark's format, written out here (not by the space)."""
    return [
        f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
        for a, b, c, d, e, f in itertools.product(ops, repeat=6)
    ]


def _trial(arch_str: str, seed: int, valid: float, test: float):
    """One trial (ResultsCount) of cifar10-valid: x-valid and ori-test accuracy per epoch."""
    config = {"arch_str": arch_str, "channel": 16, "num_cells": 5, "class_num": 10}
    trial = api_module.ResultsCount(
        "cifar10-valid",
        None,
        {i: 50.0 + i for i in range(EPOCHS)},
        {i: 1.0 for i in range(EPOCHS)},
        0.1,
        10.0,
        config,
        seed,
        EPOCHS,
        [0.01],
    )
    accs, losses, times = {}, {}, {}
    for name, last in (("x-valid", valid), ("ori-test", test)):
        for i in range(EPOCHS):  # the last epoch holds the accuracy looked up
            accs[f"{name}@{i}"] = last if i == EPOCHS - 1 else 10.0
            losses[f"{name}@{i}"], times[f"{name}@{i}"] = 1.0, 0.5
    trial.update_eval(accs, losses, times)
    return trial


def write_benchmark(path, evaluated: dict[int, list[tuple[float, float]]], ops=NB201_OPS):
    """A benchmark file: all strings of `ops`; `evaluated[index]` = (valid, test) per seed."""
    meta = official_strings(ops)
    infos = {}
    for index, trials in evaluated.items():
        per_hp = {}
        for hp in ("less", "full"):
            results = api_module.ArchResults(index, meta[index])
            for seed, (valid, test) in zip(SEEDS, trials, strict=False):
                results.update("cifar10-valid", seed, _trial(meta[index], seed, valid, test))
            per_hp[hp] = results.state_dict()
        infos[index] = per_hp
    data = {"meta_archs": meta, "arch2infos": infos, "evaluated_indexes": sorted(evaluated)}
    torch.save(data, path)
    return meta


def test_space_strings_parse_with_the_package_for_every_op_on_every_edge():
    space = NB201Space()
    for op, edge in itertools.product(NB201_OPS, EDGES):
        others = "nor_conv_3x3" if op != "nor_conv_3x3" else "skip_connect"
        arch = space.architecture({e: [op if e == edge else others] for e in EDGES})
        text = space.to_arch_string(arch)
        nodes = api_module.NASBench201API.str2lists(text)
        assert nodes == [tuple((arch[f"{j}<-{i}"][0], i) for i in range(j)) for j in range(1, 4)], (
            text
        )
        matrix = api_module.NASBench201API.str2matrix(text)
        j, i = (int(x) for x in edge.split("<-"))
        assert matrix[j, i] == NB201_OPS.index(op)  # the package's op numbering is the space's
        assert space.from_arch_string(text) == arch
    # every string the benchmark lists is an architecture of the space, printed back identically
    for text in official_strings()[::97]:
        assert space.to_arch_string(space.from_arch_string(text)) == text


def _store(tmp_path, meta, indices, scores):
    space = NB201Space()
    path = tmp_path / "search" / "results.sqlite"
    with ResultsStore(path, space=space) as store:
        for index, score in zip(indices, scores, strict=True):
            store.add({"arch": space.from_arch_string(meta[index]), "oneshot_acc": score})
    return path


def test_report_looks_architectures_up_in_a_benchmark_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    indices = [3, 100, 2024, 5000, 7777, 9001, 12345, 15624]
    trials = {i: [tuple(rng.uniform(40, 90, 2)) for _ in SEEDS] for i in indices}
    meta = write_benchmark(tmp_path / "bench.pth", trials)
    scores = rng.uniform(0.2, 0.9, len(indices) + 1).tolist()
    store = _store(tmp_path, meta, [*indices, 42], scores)  # index 42: not evaluated
    truth = ["--truth", f"nb201:{tmp_path / 'bench.pth'}"]
    args = ["--store", str(store), *truth, "--resamples", "200", "--out", str(tmp_path / "q")]
    assert main(args) == 0
    report = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert report["n"] == len(indices) and len(report["unmatched_archs"]) == 1
    assert report["metric"] == "NAS-Bench-201 cifar10-valid valid-accuracy (200 epochs)"
    valid = [np.mean([t[0] for t in trials[i]]) for i in indices]  # mean over the seeds
    expected = dict(zip(scores, valid, strict=False))
    assert {p["oneshot"]: p["truth"] for p in report["pairs"]} == pytest.approx(expected)
    assert report["kendall_tau"]["value"] == pytest.approx(
        sps.kendalltau(scores[: len(indices)], valid).statistic
    )
    assert "not in the benchmark file" in capsys.readouterr().out
    # another metric of the same trials: the test accuracy
    assert main([*args, "--nb201-metric", "test-accuracy", "--nb201-hp", "12"]) == 0
    report = json.loads((tmp_path / "q" / "quality.json").read_text())
    test = {s: np.mean([t[1] for t in trials[i]]) for s, i in zip(scores, indices, strict=False)}
    assert {p["oneshot"]: p["truth"] for p in report["pairs"]} == pytest.approx(test)


def test_benchmark_truth_refuses_other_spaces_and_settings_clearly(tmp_path, capsys):
    write_benchmark(tmp_path / "bench.pth", {0: [(50.0, 50.0)]}, ops=NB201_OPS[:4])
    api = load_benchmark(tmp_path / "bench.pth")
    with pytest.raises(NasError, match=r"op\(s\) \['avg_pool_3x3'\] that the benchmark"):
        check_space(NB201Space(), api, "store")
    assert check_space(NB201Space(NB201_OPS[:3]), api, "store").ops == NB201_OPS[:3]
    with pytest.raises(NasError, match="NAS-Bench-201 covers only the nb201 space"):
        check_space(build_space({"name": "oneshot_cell"}), api, "store")

    other = tmp_path / "other.sqlite"
    space = build_space({"name": "oneshot_cell"})
    with ResultsStore(other, space=space) as store:
        for k in range(3):
            arch = space.sample(random.Random(k))
            store.add({"arch": arch, "oneshot_acc": 0.1 * k})
    truth = f"nb201:{tmp_path / 'bench.pth'}"
    assert main(["--store", str(other), "--truth", truth]) == 2
    assert "covers only the nb201 space" in capsys.readouterr().err
    assert main(["--store", str(other), "--truth", truth, str(tmp_path)]) == 2
    assert "mixes a benchmark" in capsys.readouterr().err
    assert main(["--store", str(other), "--truth", "nb201:/nonexistent.pth"]) == 2
    assert "benchmark file '/nonexistent.pth' does not exist" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert main(["--store", str(other), "--truth", f"nb201:{tmp_path / 'junk.pth'}"]) == 2
    assert "is not a NAS-Bench-201 benchmark file" in capsys.readouterr().err


def test_a_missing_package_is_one_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nas_201_api", None)  # import fails as if not installed
    meta = official_strings()
    store = _store(tmp_path, meta, [0, 1], [0.1, 0.2])
    assert main(["--store", str(store), "--truth", f"nb201:{tmp_path / 'b.pth'}"]) == 2
    assert "pip install 'oneshot-nas[nb201]'" in capsys.readouterr().err

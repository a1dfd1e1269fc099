"""Every experiment, study and strategy config composes, resolves, and names real constructors.

The files are found by globbing conf/, so a new experiment is checked without touching this file.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

import search  # noqa: F401  (registers the run_dir_of resolver)
import study  # noqa: F401  (registers the dir_of resolver)
import train  # noqa: F401  (registers the run_dir_for resolver)
from nas.config import check_settings
from tests.conftest import ROOT, compose_config


def _names(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def _fill_missing(node: DictConfig, tmp_path: Path) -> None:
    """Give every ??? under `node` a dummy path (OmegaConf.missing_keys would resolve, and fail)."""
    for key in node:
        if OmegaConf.is_missing(node, key):
            node[key] = str(tmp_path / str(key))
        elif isinstance(node._get_node(key), DictConfig):
            _fill_missing(node[key], tmp_path)


def _resolved(cfg, tmp_path: Path) -> dict:
    """The config without its `hydra` node, every ??? given a dummy path, fully resolved."""
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
        _fill_missing(cfg, tmp_path)
    return OmegaConf.to_container(cfg, resolve=True)


def _targets(node, where: str = "") -> list[tuple[str, dict]]:
    """(key, node) of every node with a `_target_`, depth first."""
    found = []
    if isinstance(node, dict):
        if "_target_" in node:
            found.append((where, node))
        for key, value in node.items():
            found += _targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _targets(value, f"{where}[{i}]")
    return found


def _check_targets(resolved: dict) -> None:
    targets = _targets(resolved)
    assert targets
    for key, node in targets:
        target = get_object(node["_target_"])  # raises when the target does not exist
        check_settings(node, key or "config", target)  # YAML keys are constructor arguments


@pytest.mark.parametrize("entry", ["train", "search"])
@pytest.mark.parametrize("name", _names("experiment"))
def test_experiment_composes_and_its_targets_exist(tmp_path, name, entry):
    ckpt = [f"ckpt={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"] if entry == "search" else []
    cfg = compose_config(entry, [f"experiment={name}", *ckpt], tmp_path)
    _check_targets(_resolved(cfg, tmp_path))


@pytest.mark.parametrize("name", _names("study"))
def test_study_composes_and_its_targets_exist(tmp_path, name):
    cfg = compose_config("study", [f"study={name}"], tmp_path)
    resolved = _resolved(cfg, tmp_path)
    assert resolved["study"]["out_dir"]
    _check_targets(resolved)


@pytest.mark.parametrize("name", _names("strategy"))
def test_strategy_composes_and_builds(tmp_path, small_space, name):
    from nas.search.strategies import build_strategy, strategy_name

    run = tmp_path / "run"
    cfg = compose_config(
        "search", [f"strategy={name}", f"ckpt={run / 'checkpoints' / 'last.ckpt'}"], tmp_path
    )
    settings = OmegaConf.to_container(cfg.strategy, resolve=True)
    assert strategy_name(settings) == name
    build_strategy(settings, small_space, random.Random(0))
    folder = f"proxy-{cfg.proxy.name}" if name == "proxy" else name  # one folder per proxy
    assert cfg.out_dir == str(run.resolve() / "search" / f"{folder}-seed0")


def test_evolution_settings_are_the_papers():
    cfg = compose_config("search", ["strategy=evolution", "ckpt=x"], ROOT)
    assert OmegaConf.to_container(cfg.strategy) == {
        "_target_": "nas.search.strategies.RegularizedEvolution",
        "population_size": 50,
        "sample_size": 10,
    }

"""Shared fixtures: small spaces and Hydra composition of the entry configs outside a Hydra run."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the entry scripts (train.py, search.py) live at the top level

torch.set_num_threads(2)


@pytest.fixture
def small_space():
    """Two choice blocks and three ops: small enough to enumerate, same machinery as the paper's."""
    from nas.spaces.oneshot_cell import OneShotCellSpace

    return OneShotCellSpace(num_blocks=2, ops=["identity", "sep3x3", "maxpool3x3"], max_ops=2)


def compose_config(name: str, overrides: list[str], run_dir: Path):
    """Compose conf/<name>.yaml as Hydra would for a run in `run_dir` (resolvers included)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def compose_train(tmp_path):
    """compose_train(*overrides) -> the train config of a run in a fresh directory."""
    return lambda *overrides: compose_config("train", list(overrides), tmp_path)


@pytest.fixture(scope="session")
def arch_file(tmp_path_factory) -> Path:
    """An architecture JSON of the smoke experiments' space (two choice blocks)."""
    from nas.spaces.oneshot_cell import OneShotCellSpace

    path = tmp_path_factory.mktemp("arch") / "arch.json"
    OneShotCellSpace(num_blocks=2).sample(random.Random(0)).save(path)
    return path


@pytest.fixture(scope="session")
def smoke_supernet(tmp_path_factory) -> Path:
    """The run directory of one `experiment=smoke` supernet, trained once for the whole session.

    Shared: tests must not write into it (copy it first, or pass search.py an out_dir elsewhere).
    """
    import train

    run = tmp_path_factory.mktemp("smoke_supernet")
    train.train(compose_config("train", ["experiment=smoke"], run))
    return run


# Space settings that fit the generic tests' network (NETWORK in test_space_interface: 2 cells,
# 2 stages); spaces not listed are built with their defaults.
SMALL_SPECS = {"enas_macro": {"layers": 2}, "enas_micro": {"nodes": 4}, "enas_rnn": {"nodes": 4}}
# Spaces whose networks read something other than images: their small network settings for the
# generic tests, and `example_input` makes their inputs (token ids for the language models).
SPACE_NETWORKS = {"enas_rnn": {"num_classes": 5, "hidden": 4, "in_channels": 1}}


def example_input(space_name: str, n: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """n examples for `space_name`'s network: images [n, 3, 8, 8] or token ids [n, 3]."""
    generator = torch.Generator().manual_seed(seed)
    if space_name in SPACE_NETWORKS:
        return torch.randint(
            0, SPACE_NETWORKS[space_name]["num_classes"], (n, 3), generator=generator
        )
    return torch.randn(n, 3, 8, 8, generator=generator, dtype=dtype)


def randomized_supernet(space, network: dict, dtype=torch.float64):
    """`space`'s supernet with non-trivial BN affine parameters (a leak through β would show)."""
    torch.manual_seed(0)
    net = space.build_supernet(**network).to(dtype)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and m.affine:  # affine-free: nothing to set
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net

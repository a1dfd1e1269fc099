"""Restoring what a search scores from checkpoints, with clear errors for the wrong kind of file.

Which class a checkpoint holds, whether it can be scored, how it is rebuilt and how several
checkpoints are searched as one is each method's to say (the method protocol,
`nas.modules.method.MethodModule`); this module only reads the files and asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nas.checkpointing import read_checkpoint
from nas.errors import NasError, check
from nas.modules.method import MethodModule, method_class, module_class_named
from nas.modules.supernet import OneShotModule

DATASET_KEY = "dataset"  # where train.py records the dataset config (nas.callbacks.dataset_record)


def run_dir_of(ckpt: str) -> str:
    """The run directory of a checkpoint (`<run>/checkpoints/x.ckpt` -> `<run>`); a directory of
    several runs (e.g. a sweep searched as one) is its own."""
    path = Path(str(ckpt)).expanduser().resolve()
    if path.is_dir():
        return str(path)
    return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def checkpoint_paths(ckpt: str) -> list[str]:
    """The checkpoints `ckpt` names: a file; a run directory (its `checkpoints/last.ckpt`); or a
    directory of runs, e.g. a `train.py -m` sweep (each job's `checkpoints/last.ckpt`)."""
    path = Path(str(ckpt)).expanduser()
    if not path.is_dir():
        return [str(ckpt)]  # a file (load_supernet_module reports one that does not exist)
    own = path / "checkpoints" / "last.ckpt"
    if own.is_file():
        return [str(own)]
    found = sorted(path.glob("*/checkpoints/last.ckpt"), key=lambda p: _natural(p.parts[-3]))
    check(
        bool(found),
        f"ckpt={str(path)!r} is a directory without supernet checkpoints (<job>/checkpoints/"
        "last.ckpt); pass a checkpoint, or the sweep directory of runs that one search scores "
        "together (hydra.sweep.dir of the `train.py -m` sweep that trained them)",
    )
    return [str(p) for p in found]


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_for_search(ckpt: str, device: torch.device) -> tuple[Any, dict | None]:
    """What one search over `ckpt` scores: the trained module of a checkpoint, or, for a directory
    of runs, what their method makes of them together (`MethodModule.searched_together`); and the
    dataset config they were trained on (None for checkpoints that do not record it)."""
    paths = checkpoint_paths(ckpt)
    modules = [load_supernet_module(p, device) for p in paths]
    datasets = [m.trained_dataset for m in modules]
    classes = {type(m) for m in modules}
    check(
        len(classes) == 1,
        f"ckpt={str(ckpt)!r} holds checkpoints of {len(classes)} methods "
        f"({', '.join(sorted(c.__name__ for c in classes))}); one search scores checkpoints of one",
    )
    return type(modules[0]).searched_together(modules, paths), datasets[0]


def scoring_dataset(
    given: Mapping, trained: Mapping | None, explicit: bool
) -> tuple[dict, str | None]:
    """The dataset config a search scores on, and a warning line where the user should know.

    Without a dataset or experiment given (`explicit` False) that is the one the checkpoint was
    trained on; one given explicitly is used, with a warning naming both when it differs (scoring a
    supernet on other data is a legitimate experiment, never a silent default).
    """
    given = dict(given)
    if trained is None:
        return given, None
    trained = dict(trained)
    if not explicit:
        return trained, None
    changed = sorted(k for k in {*given, *trained} if given.get(k) != trained.get(k))
    if not changed:
        return given, None
    theirs = ", ".join(f"{k}={trained.get(k)!r}" for k in changed)
    ours = ", ".join(f"{k}={given.get(k)!r}" for k in changed)
    return given, (
        f"warning: scoring on a dataset other than the checkpoint's: given {ours}; trained on "
        f"{theirs}; drop the dataset or experiment overrides to score on the training data"
    )


def load_supernet_module(ckpt: str, device: torch.device):
    """The trained module stored in `ckpt`, on `device`, in eval mode; the space comes from it."""
    path = Path(str(ckpt)).expanduser()
    check(
        path.is_file(),
        f"checkpoint {str(path)!r} does not exist; pass ckpt=<run>/checkpoints/last.ckpt "
        "written by train.py",
    )
    raw = read_checkpoint(path)
    cls = _module_class(raw if isinstance(raw, dict) else {}, path)
    cls.check_searchable(raw, path)
    module = cls.restore(raw, path).to(device).eval()
    module.trained_dataset = raw.get(DATASET_KEY)  # recorded by train.py (DatasetRecord)
    return module


def _module_class(raw: dict, path: Path) -> type[MethodModule]:
    """The training module a checkpoint names; that of Bender's method for checkpoints written
    before others existed."""
    name = raw.get("module_class")
    if name is None:
        return OneShotModule
    try:
        cls = module_class_named(name, path)
    except NasError:  # the class moved since: the method's registered name still finds it
        if not raw.get("method"):
            raise
        cls = method_class(raw["method"])
    check(
        isinstance(cls, type) and issubclass(cls, MethodModule),
        f"checkpoint {str(path)!r} holds a {name}, not a supernet; search needs a supernet checkpoint",
    )
    return cls

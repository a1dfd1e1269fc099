"""The stand-alone image classifier of a checkpoint, rebuilt with its trained weights, in eval mode.

Which class wrote a checkpoint, in this order: the class given (`--module-class`); `module_class`
recorded in the checkpoint (supernet methods and the language models record it); `model._target_`
of the run's Hydra config, `<run>/.hydra/config.yaml`, written beside every `train.py` run. A class
that moved since is found through `MOVED` (`nas.modules.method.module_class_named`).

Only modules that retrain one architecture of a space (`"arch"` among their `inputs`) and classify
images (`ClassifierModule`) are exported; any other checkpoint (a supernet, the recurrent ENAS
language models, the compression of a fixed network) stops with one line saying what it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from nas.checkpointing import read_checkpoint
from nas.config import settings_of
from nas.errors import NasError, check
from nas.modules.base import ClassifierModule
from nas.modules.method import MethodModule, method_class, module_class_named
from nas.search.checkpoint import DATASET_KEY, run_dir_of

HYDRA_CONFIG = Path(".hydra") / "config.yaml"  # what Hydra writes into every run directory
HOW_TO_RETRAIN = "train.py experiment=<a *_standalone experiment> arch=<architecture JSON>"


def checkpoint_file(ckpt: str | Path) -> Path:
    """The checkpoint `ckpt` names: a file, or a run directory (its `checkpoints/last.ckpt`)."""
    path = Path(str(ckpt)).expanduser()
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        check(
            last.is_file(),
            f"--ckpt {str(path)!r} is a directory without checkpoints/last.ckpt; pass the "
            "checkpoint of a stand-alone run (<run>/checkpoints/last.ckpt)",
        )
        return last
    check(
        path.is_file(),
        f"--ckpt {str(path)!r} does not exist; pass the checkpoint of a stand-alone run "
        "(<run>/checkpoints/last.ckpt written by train.py)",
    )
    return path


def run_config(path: Path) -> dict | None:
    """The Hydra config of the run that wrote checkpoint `path` (None when there is none)."""
    config = Path(run_dir_of(str(path))) / HYDRA_CONFIG
    if not config.is_file():
        return None
    try:
        return OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    except Exception:  # an interpolation only the training run could resolve: use the raw values
        return OmegaConf.to_container(OmegaConf.load(config), resolve=False)


def module_class_of(raw: Mapping, path: Path, given: str | None, config: Mapping | None) -> type:
    """The training module class of checkpoint `raw` (see the module docstring for the order)."""
    name = given or raw.get("module_class")
    if name is None and config is not None:
        name = (config.get("model") or {}).get("_target_")
    check(
        bool(name),
        f"checkpoint {str(path)!r} does not say which class wrote it (no module_class in it and no "
        f"{HYDRA_CONFIG} in its run directory); pass --module-class, e.g. "
        "nas.modules.StandaloneModule or nas.methods.darts.DartsEvalModule",
    )
    try:
        return module_class_named(str(name), path)
    except NasError:  # moved since it was written: its method's registered name still finds it
        check(
            not given,
            f"--module-class {given!r} cannot be imported; pass a class's import path, e.g. "
            "nas.modules.StandaloneModule or nas.methods.darts.DartsEvalModule",
        )
        if not raw.get("method"):
            raise
        return method_class(raw["method"])


def check_exportable(cls: type, raw: Mapping, path: Path) -> None:
    """Stop unless `cls` is the stand-alone image classifier of one architecture."""
    name = getattr(cls, "__name__", str(cls))
    dataset = (raw.get(DATASET_KEY) or {}).get("_target_")
    trained_on = f" trained on {dataset}" if dataset else ""
    check(
        isinstance(cls, type) and issubclass(cls, ClassifierModule),
        f"checkpoint {str(path)!r} holds a {name}{trained_on}, not an image classifier; "
        "python -m nas.export exports the stand-alone image classifier of one architecture "
        f"(StandaloneModule, DartsEvalModule: {HOW_TO_RETRAIN})",
    )
    inputs = getattr(cls, "inputs", frozenset())
    what = "a supernet of a whole search space" if "space" in inputs else "no searched architecture"
    check(
        "arch" in inputs,
        f"checkpoint {str(path)!r} holds a {name}, which trains {what}; export the stand-alone "
        f"network of one architecture instead: retrain it ({HOW_TO_RETRAIN}) and pass that run's "
        "checkpoint",
    )


def restore_classifier(path: Path, given_class: str | None = None) -> tuple:
    """(the module of checkpoint `path` in eval mode with its trained weights, the checkpoint's
    contents, the run's Hydra config or None)."""
    raw = read_checkpoint(path)
    config = run_config(path)
    cls = module_class_of(raw, path, given_class, config)
    check_exportable(cls, raw, path)
    hparams = dict(raw.get("hyper_parameters") or {})
    try:
        if issubclass(cls, MethodModule):
            module = cls.restore(raw, path)
        else:
            # Lightning's way: the saved hyperparameters that the constructor takes (`arch_id`,
            # `group` are recorded beside them for the reports)
            names = settings_of(cls)
            module = cls(
                **(hparams if names is None else {k: hparams[k] for k in hparams if k in names})
            )
            module.load_state_dict(raw["state_dict"])
    except (TypeError, RuntimeError, KeyError) as err:
        raise NasError(
            f"checkpoint {str(path)!r} cannot be rebuilt as a {cls.__name__} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); pass the class that wrote "
            "it with --module-class"
        ) from None
    return module.eval(), raw, config

"""Helpers for the entry scripts: clear one-line errors instead of tracebacks, config checks."""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
from collections.abc import Mapping

from nas.errors import NasError, check

# Settings that have no default, with what to pass; used in the message for a missing value (???).
_REQUIRED = {
    "ckpt": "a supernet checkpoint written by train.py: ckpt=<run>/checkpoints/last.ckpt",
    "arch": "an architecture JSON written by search.py: arch=<run>/search/<...>/selections/<file>.json",
}


def _chain(err: BaseException):
    """`err` and the exceptions it was raised from (Hydra and Lightning wrap errors)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _first_line(text: str) -> str:
    return " ".join(str(text).strip().splitlines()[0].split()) if str(text).strip() else ""


def _missing(err: BaseException) -> str:
    found = re.search(r"Missing mandatory value: ([\w.\[\]]+)", str(err))
    key = found.group(1) if found else str(getattr(err, "full_key", "") or "?")
    what = _REQUIRED.get(key.split(".")[-1], f"{key}=<value>")
    return f"{key} has no value (??? in the config); pass {what}"


def _describe(err: BaseException) -> str | None:
    """One line for a bad-input error, or None for an error that is a bug (keep its traceback)."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        InterpolationToMissingValueError,
        MissingMandatoryValue,
    )

    chain = list(_chain(err))
    for e in chain:  # our own message wins wherever it sits in the chain
        if isinstance(e, NasError):
            return str(e)
    for e in chain:
        if isinstance(e, MissingMandatoryValue | InterpolationToMissingValueError):
            return _missing(e)
        if isinstance(e, MissingConfigException):
            # Hydra lists the available options on the lines after the first; keep them on one line.
            text = str(e).split("Config search path")[0]
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            return lines[0] + (
                "; " + lines[1] + " " + ", ".join(lines[2:]) if len(lines) > 2 else ""
            )
        if isinstance(e, ConfigCompositionException | OverrideParseException):
            key = re.search(r"Could not override '([^']+)'", str(e))
            if key and isinstance(e.__cause__, ConfigKeyError | ConfigAttributeError):
                return (
                    f"{key.group(1)} is not a setting of this config; check its spelling "
                    "(`python train.py --cfg job` prints every setting)"
                )
            return " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        if isinstance(e, ConfigKeyError | ConfigAttributeError):
            return f"{_first_line(e)} (full key: {getattr(e, 'full_key', '?')})"
        if isinstance(e, InstantiationException) and "unexpected keyword argument" in str(e):
            arg = re.search(r"unexpected keyword argument '(\w+)'", str(e))
            where = re.search(r"full_key: (\S+)", str(e))
            key = f"{where.group(1) if where else '?'}.{arg.group(1) if arg else '?'}"
            target = re.search(r"target '([\w.]+)'", str(e))
            name = target.group(1).rsplit(".", 1)[-1] if target else "its target"
            return f"{key}: not a setting of {name}; check its spelling"
        if isinstance(e, MisconfigurationException):
            return f"trainer: {_first_line(e)}"
        if isinstance(e, OSError) and e.filename:
            return (
                f"cannot use {str(e.filename)!r}: {e.strerror or e}; choose a path that can be "
                "written (e.g. hydra.run.dir=<a writable directory>) or fix the file's permissions"
            )
    return None


@contextlib.contextmanager
def user_errors():
    """Print bad-input errors as one clear line on stderr and exit with status 2."""
    try:
        yield
    except Exception as err:
        message = _describe(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def run_cli(main) -> None:
    """Run a `hydra.main` function; errors Hydra meets before the task runs become one line too."""
    # Hydra prints its own multi-line report unless asked to re-raise; we want to format it ourselves.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    with user_errors():
        main()


def check_settings(node: Mapping, section: str, target=None) -> None:
    """Stop on a key under `section` that the constructor of its `_target_` does not take."""
    from hydra.utils import get_object

    target = target or get_object(node["_target_"])
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [name for name in params if name != "self"]
    unknown = sorted(k for k in node if not str(k).startswith("_") and k not in known)
    name = getattr(target, "__name__", str(target))
    check(
        not unknown,
        f"{', '.join(f'{section}.{k}' for k in unknown)}: not a setting of {name}; "
        f"its settings are {', '.join(known)}",
    )


def check_run_settings(seed, max_epochs, max_steps) -> None:
    """Stop on a seed or training length that Lightning or NumPy would reject deep inside."""
    check(
        isinstance(seed, int) and 0 <= seed < 2**32,
        f"seed={seed!r} must be an integer in [0, 2**32)",
    )
    check(
        isinstance(max_steps, int) and (max_steps == -1 or max_steps >= 1),
        f"trainer.max_steps={max_steps!r} must be -1 (no limit: max_epochs decides) or >= 1",
    )
    check(
        max_epochs is None
        or (isinstance(max_epochs, int) and (max_epochs == -1 or max_epochs >= 1)),
        f"trainer.max_epochs={max_epochs!r} must be >= 1, or -1 (no limit: max_steps decides)",
    )


def build_module(
    model: Mapping, search_space: Mapping, arch, datamodule, sampler: Mapping | None = None
):
    """The LightningModule of `model`: the supernet of `search_space` trained with `sampler`, or the
    stand-alone child of `arch`."""
    from hydra.utils import get_object, instantiate

    target = get_object(model["_target_"])
    check_settings(model, "model", target)
    kwargs = {"num_classes": datamodule.num_classes, "in_channels": datamodule.in_channels}
    if "arch" in inspect.signature(target).parameters:  # stand-alone retraining of one architecture
        check(
            arch,
            f"{target.__name__} trains one architecture: pass arch=<file.json> written by search.py",
        )
        kwargs["arch"] = arch
    else:
        check(
            not arch,
            f"arch={arch} is set, but {target.__name__} trains the whole supernet; use a "
            "stand-alone experiment (e.g. experiment=quickstart_standalone) or drop arch",
        )
        check_settings(search_space, "search_space")
        kwargs["space"] = instantiate(search_space)
        if sampler and "sampler" in inspect.signature(target).parameters:
            check_settings(sampler, "sampler")
            kwargs["sampler"] = instantiate(sampler)
    return instantiate(model)(**kwargs)


def build_callbacks(callbacks: Mapping | None) -> list:
    """The callbacks of the `callbacks` group; settings for a callback the group leaves out are skipped.

    Experiments tune the analysis panel (`callbacks.oneshot_panel.*`); with `callbacks=default` that
    callback is not configured, and its leftover settings (no `_target_`) must not become a callback.
    """
    import logging

    from hydra.utils import instantiate

    built = []
    for name, node in (callbacks or {}).items():
        if isinstance(node, Mapping) and "_target_" not in node:
            logging.getLogger(__name__).info(
                "callbacks.%s: not in this callbacks group; skipped", name
            )
            continue
        built.append(instantiate(node))
    return built


def device_of(accelerator: str, precision: str | int):
    """(torch device, autocast dtype or None) for the hardware group's trainer settings."""
    import torch

    use_cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    if use_cuda and not torch.cuda.is_available():
        raise NasError(
            f"trainer.accelerator={accelerator!r} but no CUDA device is visible; use hardware=cpu"
        )
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
    return device, dtype


def write_run_result(trainer, module, metrics: dict, run_dir: str) -> dict:
    """Write `<run_dir>/result.json` (final metrics, size, architecture) for `python -m nas.collect`."""
    import json
    from pathlib import Path

    metrics = {k.replace("/", "_"): float(v) for k, v in metrics.items() if v.numel() == 1}
    h = module.hparams
    result = {
        "kind": type(module).__name__,
        "group": h.get("group"),
        "arch_id": h.get("arch_id"),
        "filters": h.get("filters"),
        "cells": h.get("cells"),
        "params": sum(p.numel() for p in module.parameters()),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        **{k: metrics[k] for k in ("val_acc", "test_acc", "val_loss", "test_loss") if k in metrics},
    }
    if trainer.is_global_zero:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result

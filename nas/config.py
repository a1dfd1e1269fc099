"""From config to objects: checks of settings, and building the module, callbacks and device.

Config reaches code only through constructor arguments; these checks stop a key that no constructor
takes, a value Lightning would reject deep inside, or a command-line setting the script ignores.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Collection, Mapping

from omegaconf import OmegaConf

from nas.errors import NasError, check


def strategy_for(devices) -> str:
    """Lightning's strategy for `trainer.devices`: one device as Lightning picks it ("auto"), more
    with DDP that looks for unused parameters (single-path steps leave most ops out of the graph)."""
    one = devices in (1, "1") or (isinstance(devices, list | tuple) and len(devices) == 1)
    return "auto" if one else "ddp_find_unused_parameters_true"


OmegaConf.register_new_resolver("strategy_for", strategy_for, replace=True)


def check_settings(
    node: Mapping, section: str, target=None, supplied: Collection[str] = ()
) -> None:
    """Stop on a key under `section` that the constructor of its `_target_` does not take.

    `supplied` names constructor arguments the code passes itself: they are not settings.
    """
    from hydra.utils import get_object

    target = target or get_object(node["_target_"])
    params = settings_of(target)
    if params is None:
        return
    known = [name for name in params if name != "self" and name not in supplied]
    unknown = sorted(k for k in node if not str(k).startswith("_") and k not in known)
    name = getattr(target, "__name__", str(target))
    check(
        not unknown,
        f"{', '.join(f'{section}.{k}' for k in unknown)}: not a setting of {name}; "
        f"its settings are {', '.join(known) or 'none'}",
    )


def settings_of(target) -> list[str] | None:
    """The keyword arguments `target` takes; a class whose `__init__` passes `**kwargs` on to its
    base adds the base's, less those it fixes (`fixed_settings`). None when they cannot be known
    (a function with `**kwargs`)."""
    fixed = set(getattr(target, "fixed_settings", ()))
    names: list[str] = []
    classes = list(target.__mro__) if isinstance(target, type) else [target]
    for owner in classes:
        function = owner.__init__ if isinstance(target, type) else owner
        if isinstance(target, type) and "__init__" not in vars(owner):
            continue
        params = inspect.signature(function).parameters.values()
        names += [
            p.name
            for p in params
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in fixed
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return list(dict.fromkeys(names))
    return None


def check_required(node: Mapping, section: str) -> None:
    """Stop on a required value (`???` in the YAML) left unset: Hydra would drop it from a partial
    call, and the constructor would fail with a traceback instead of naming it."""
    if not OmegaConf.is_config(node):
        return
    missing = [str(k) for k in node if OmegaConf.is_missing(node, k)]
    check(
        not missing,
        f"{', '.join(f'{section}.{k}' for k in missing)}: required but not set; pass "
        f"{' '.join(f'{section}.{k}=<value>' for k in missing)} (the config's comments say what "
        "each takes)",
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
    """The LightningModule of `model`: a method's module, built with what its class says it takes
    (`inputs` of the method protocol, `nas.modules.method`: the space of `search_space`, the
    sampler of `sampler`), or a stand-alone module of the architecture `arch`."""
    from hydra.utils import get_object, instantiate

    target = get_object(model["_target_"])
    check_settings(model, "model", target)
    check_required(model, "model")
    inputs = getattr(target, "inputs", frozenset())
    kwargs = {"num_classes": datamodule.num_classes, "in_channels": datamodule.in_channels}
    if "arch" in inputs:  # stand-alone retraining of one architecture
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
        if "space" in inputs:
            check_settings(search_space, "search_space")
            kwargs["space"] = instantiate(search_space)
        if "sampler" in inputs:
            if sampler:
                check_settings(sampler, "sampler")
                kwargs["sampler"] = instantiate(sampler)
        else:  # e.g. a controller or architecture parameters draw the paths
            reason = f"{target.__name__} draws its own architectures"
            check_overrides_used(f"model={target.__name__}", {"sampler": reason})
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


def command_line_overrides() -> list[tuple[str, str, str, str]] | None:
    """(override, key, value, group) of every command-line override of this Hydra run, e.g.
    ("+model.lr=0.2", "model.lr", "0.2", "model"); None when called from code, not a command line."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    found = []
    for override in HydraConfig.get().overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        key = key.split("@")[0]  # `group@package=option`: the group decides
        found.append((override, key, value, re.split(r"[.\[]", key)[0]))
    return found


def check_overrides_used(
    script: str, ignored: Mapping[str, str], instead: Mapping[str, str] | None = None
) -> None:
    """Stop on a command-line override of a setting `script` does not read: it would do nothing.

    `ignored` maps a config group (`model`) to why the script ignores it; an override of the group
    (`model=standalone`) or of any key under it (`model.lr=0.2`, `+model.x=1`) is refused, naming
    the key of `instead` that does what was meant where there is one.
    """
    overrides = command_line_overrides()
    if overrides is None:  # called from code, not from a command line
        return
    refused = []
    for override, key, value, group in overrides:
        if group not in ignored:
            continue
        what = f"the {group} group" if key == group else f"{group}.*"
        fix = "drop it"
        if key in (instead or {}) and not override.startswith("~"):
            fix = f"pass {instead[key]}={value} instead"
        refused.append(f"{override}: {script} does not read {what} ({ignored[group]}); {fix}")
    check(not refused, "; ".join(refused))

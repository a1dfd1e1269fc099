"""NAS-Bench-201's benchmark file as the truth: every stored architecture looked up by its string.

`python -m nas.quality --store S --truth nb201:<benchmark file>` reads the benchmark through the
official `nas-bench-201` package (module `nas_201_api`, the optional extra `oneshot-nas[nb201]`):
each architecture of the store (space `nb201`) prints as the benchmark's arch string
(`NB201Space.to_arch_string`), `query_index_by_arch` finds its index, and `get_more_info` gives its
metrics averaged over the benchmark's trials (`is_random=False`). Accuracies are in percent, as the
benchmark stores them, so regret is in percentage points.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

from nas.errors import NasError, check
from nas.spaces import Architecture, SearchSpace
from nas.spaces.nb201 import NB201Space

PREFIX = "nb201:"
DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
METRICS = ("valid-accuracy", "test-accuracy", "train-accuracy", "valtest-accuracy")
HPS = ("12", "200")  # the benchmark's training schedules: 12 or 200 epochs
DEFAULTS = {"dataset": "cifar10-valid", "metric": "valid-accuracy", "hp": "200"}
INSTALL = "pip install 'oneshot-nas[nb201]' (or pip install nas-bench-201)"


def api_class():
    """`nas_201_api.NASBench201API`, imported only when a benchmark is asked for."""
    try:
        from nas_201_api import NASBench201API
    except ImportError:
        raise NasError(
            "the NAS-Bench-201 truth needs the nas-bench-201 package (module nas_201_api), "
            f"which is not installed; {INSTALL}"
        ) from None
    return NASBench201API


def load_benchmark(path: str | Path):
    """The NASBench201API of a benchmark file (e.g. NAS-Bench-201-v1_1-096897.pth)."""
    cls = api_class()
    path = Path(str(path)).expanduser()
    check(
        path.is_file(),
        f"NAS-Bench-201 benchmark file {str(path)!r} does not exist; pass --truth nb201:<path of "
        "NAS-Bench-201-v1_0-e61699.pth or NAS-Bench-201-v1_1-096897.pth>",
    )
    import torch

    try:
        # The file is a pickle of the package's Python objects, not tensors only: weights_only=False
        # (torch's default refuses it). Only load benchmark files you trust.
        data = torch.load(path, map_location="cpu", weights_only=False)
        return cls(data, verbose=False)
    except (
        AssertionError,
        KeyError,
        TypeError,
        AttributeError,
        EOFError,
        RuntimeError,
        ValueError,
        pickle.UnpicklingError,
    ) as err:
        raise NasError(
            f"{str(path)!r} is not a NAS-Bench-201 benchmark file ({type(err).__name__}: {err}); "
            "pass the .pth file of the benchmark (dict with meta_archs, arch2infos, "
            "evaluated_indexes)"
        ) from None


def benchmark_ops(api) -> set[str]:
    """Every op named in the benchmark's architecture strings (parsed with its own str2lists)."""
    ops: set[str] = set()
    for text in api.meta_archs:
        nodes = api.str2lists(text)
        check(
            len(nodes) == 3 and [len(n) for n in nodes] == [1, 2, 3],
            f"benchmark architecture {text!r} is not a 4-node NAS-Bench-201 cell (inputs "
            f"{[len(n) for n in nodes]}); this lookup supports the NAS-Bench-201 topology file only",
        )
        ops.update(op for node in nodes for op, _ in node)
    return ops


def check_space(space: SearchSpace, api, where: str) -> NB201Space:
    """`space` if it is an nb201 space whose ops the benchmark has; a clear refusal otherwise."""
    check(
        isinstance(space, NB201Space),
        f"{where} holds architectures of space {space.name!r}; NAS-Bench-201 covers only the "
        "nb201 space (train with search_space=nb201, e.g. experiment=quickstart_nb201), or pass "
        "stand-alone runs as --truth",
    )
    known = benchmark_ops(api)
    missing = [op for op in space.ops if op not in known]
    check(
        not missing,
        f"{where} is an nb201 space with op(s) {missing} that the benchmark does not have (its "
        f"ops: {sorted(known)}); search the benchmark's ops",
    )
    return space


def lookup(
    api,
    archs: Iterable[Architecture],
    dataset: str = "cifar10-valid",
    metric: str = "valid-accuracy",
    hp: str = "200",
) -> tuple[dict[str, float], list[str]]:
    """({arch id: metric}, [ids the benchmark has not evaluated]) of `archs` (nb201 space)."""
    check(dataset in DATASETS, f"--nb201-dataset={dataset!r} must be one of {list(DATASETS)}")
    check(metric in METRICS, f"--nb201-metric={metric!r} must be one of {list(METRICS)}")
    check(str(hp) in HPS, f"--nb201-hp={hp!r} must be one of {list(HPS)} (training epochs)")
    found, missing = {}, []
    for arch in archs:
        index = api.query_index_by_arch(arch.space.to_arch_string(arch))
        if index < 0 or index not in api.arch2infos_dict:
            missing.append(arch.id)
            continue
        names = api.arch2infos_dict[index][str(hp)].get_dataset_names()
        check(
            dataset in names,
            f"the benchmark has no {dataset!r} results for architecture {index} (it has "
            f"{names}); pick one of them with --nb201-dataset",
        )
        info = api.get_more_info(index, dataset, hp=str(hp), is_random=False)
        check(
            info.get(metric) is not None,
            f"the benchmark has no {metric!r} on {dataset!r} (it has "
            f"{sorted(k for k, v in info.items() if k.endswith('accuracy') and v is not None)}); "
            "pick one of them with --nb201-metric",
        )
        found[arch.id] = float(info[metric])
    return found, missing


def benchmark_truth(
    archs: Sequence[Architecture],
    space: SearchSpace,
    path: str | Path,
    where: str,
    dataset: str = "cifar10-valid",
    metric: str = "valid-accuracy",
    hp: str = "200",
) -> tuple[dict[str, float], list[str]]:
    """Load the benchmark at `path`, check `space` against it and look `archs` up (`lookup`)."""
    api = load_benchmark(path)
    check_space(space, api, where)
    return lookup(api, archs, dataset, metric, hp)

"""Few-shot search: score every architecture with the sub-supernet that contains it.

Few-shot NAS (`nas/methods/fewshot.py`) trains one sub-supernet per option of a split decision. A
search over them takes `ckpt=<directory>`: the directory of the `train.py -m` sweep that trained
them (each job's `checkpoints/last.ckpt`). Every architecture goes to the sub-supernet of its option
on the split decision; together the sub-supernets must cover every option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nas.errors import check
from nas.methods.fewshot import NETWORK
from nas.spaces.base import Architecture

Evaluator = Callable[[Sequence[Architecture]], Sequence[Mapping]]


class RoutedEvaluator:
    """Groups architectures by their option on decision `split`, scores each group with that
    option's evaluator, and returns the results in the order of the architectures given."""

    def __init__(self, evaluators: Mapping[str, Evaluator], split: str):
        check(bool(evaluators), "RoutedEvaluator needs at least one evaluator")
        self.evaluators, self.split = dict(evaluators), split

    def option_of(self, arch: Architecture) -> str:
        chosen = arch[self.split]
        check(
            len(chosen) == 1 and chosen[0] in self.evaluators,
            f"architecture {arch.id} takes {list(chosen)} on decision {self.split!r}; the "
            f"sub-supernets hold one option each, of {sorted(self.evaluators)}",
        )
        return chosen[0]

    def __call__(self, archs: Sequence[Architecture]) -> list[dict]:
        groups: dict[str, list[int]] = {}
        for i, arch in enumerate(archs):
            groups.setdefault(self.option_of(arch), []).append(i)
        results: list = [None] * len(archs)
        for option, indices in groups.items():
            scored = self.evaluators[option]([archs[i] for i in indices])
            check(
                len(scored) == len(indices),
                f"the evaluator of option {option!r} returned {len(scored)} results for "
                f"{len(indices)} architectures",
            )
            for i, result in zip(indices, scored, strict=True):
                results[i] = result
        return results


def supernet_checkpoints(ckpt: str) -> list[str]:
    """The supernet checkpoints `ckpt` names: a file; a run directory (its `checkpoints/last.ckpt`);
    or a directory of runs, e.g. a `train.py -m` sweep (each job's `checkpoints/last.ckpt`)."""
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
        "last.ckpt); pass a checkpoint, or the sweep directory of few-shot sub-supernets "
        "(hydra.sweep.dir of `train.py -m experiment=quickstart_fewshot model.option=...`)",
    )
    return [str(p) for p in found]


def _natural(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def load_supernets(ckpt: str, device):
    """The supernet `ckpt` names, or the list of sub-supernets of a directory (checked to form
    one complete split: see `check_split`)."""
    from nas.search.checkpoint import load_supernet_module

    paths = supernet_checkpoints(ckpt)
    modules = [load_supernet_module(p, device) for p in paths]
    if len(modules) == 1 and modules[0].hparams.get("split") is None:
        return modules[0]
    check_split(modules, paths)
    return modules


def route(modules: Sequence, evaluators: Sequence[Evaluator]):
    """The evaluator of a search over `modules` (one evaluator each): a one-shot supernet's own,
    or, for few-shot sub-supernets, a `RoutedEvaluator` over them (after `check_split`)."""
    if len(modules) == 1 and modules[0].hparams.get("split") is None:
        return evaluators[0]
    check_split(modules)
    routed = {m.hparams.option: e for m, e in zip(modules, evaluators, strict=True)}
    return RoutedEvaluator(routed, modules[0].hparams.split)


def check_split(modules: Sequence, names: Sequence[str] = ()) -> None:
    """Stop unless `modules` are few-shot sub-supernets of one space, network and split decision
    that cover each of its options once; `names` (their checkpoints) identify them in messages."""
    names = list(names) or [f"sub-supernet {i}" for i in range(len(modules))]
    splits = [m.hparams.get("split") for m in modules]
    plain = [n for n, s in zip(names, splits, strict=True) if s is None]
    check(
        not plain,
        f"{', '.join(plain)}: not a few-shot sub-supernet (no split decision); a search over "
        "several supernets routes architectures to few-shot sub-supernets (model=fewshot)",
    )
    first, h = modules[0], modules[0].hparams
    for name, module in zip(names[1:], modules[1:], strict=True):
        check(
            module.space.fingerprint == first.space.fingerprint,
            f"{name} has search space {module.space.spec()}, but {names[0]} has "
            f"{first.space.spec()}; search sub-supernets of one split",
        )
        theirs, ours = ({k: m.hparams[k] for k in NETWORK} for m in (module, first))
        check(
            theirs == ours,
            f"{name} has network {theirs}, but {names[0]} has {ours}; search sub-supernets of "
            "one split",
        )
        check(
            module.hparams.split == h.split,
            f"{name} splits decision {module.hparams.split!r}, but {names[0]} splits "
            f"{h.split!r}; search sub-supernets of one split",
        )
    by_option: dict[str, list[str]] = {}
    for name, module in zip(names, modules, strict=True):
        by_option.setdefault(module.hparams.option, []).append(name)
    twice = {o: n for o, n in by_option.items() if len(n) > 1}
    check(
        not twice,
        "; ".join(
            f"option {o!r} has {len(n)} sub-supernets: {', '.join(n)}" for o, n in twice.items()
        )
        + "; keep one per option",
    )
    options = first.space.decision(h.split).options
    missing = [o for o in options if o not in by_option]
    check(
        not missing,
        f"the sub-supernets of decision {h.split!r} cover options {sorted(by_option)} but not "
        f"{missing}; train those too (model.option={','.join(missing)}) into the same directory",
    )

"""Few-shot search: score every architecture with the sub-supernet that contains it.

Few-shot NAS (`nas/methods/fewshot/module.py`) trains one sub-supernet per option of a split
decision. A search over them takes `ckpt=<directory>`: the directory of the `train.py -m` sweep that
trained them (each job's `checkpoints/last.ckpt`). Every architecture goes to the sub-supernet of
its option on the split decision; together the sub-supernets must cover every option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nas.errors import check
from nas.modules.method import Evaluator
from nas.spaces.base import Architecture
from nas.spaces.interface import network_of


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


class SubSupernets:
    """The few-shot sub-supernets of one split, searched as one: they share the space and network
    of the first (checked by `check_split`), and every architecture is scored by its option's."""

    def __init__(self, modules: Sequence, names: Sequence[str] = ()):
        check_split(modules, names)
        self.modules = list(modules)
        first = self.modules[0]
        self.space, self.hparams, self.eval_ghost_size = (
            first.space,
            first.hparams,
            first.eval_ghost_size,
        )

    def scorer(self, evaluator_of: Callable[[Any], Evaluator]) -> RoutedEvaluator:
        routed = {m.hparams.option: evaluator_of(m) for m in self.modules}
        return RoutedEvaluator(routed, self.hparams.split)


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
        theirs, ours = network_of(module.hparams), network_of(first.hparams)
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

"""A seeded, stratified split of labelled examples into train/val/test index sets.

Each class gives `round(n_c * fraction)` of its examples (rounded half up) to each held-out split,
so the class proportions of every split follow the whole; the rest train. A split that ends up
empty, or a class left without training examples, stops with the fraction to change. Each split's
indices are shuffled (seeded) at the end, so its first examples are not all of one class (the
one-shot panel reads the first validation examples).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from nas.errors import check

SPLIT_NAMES = {"val": "validation", "test": "test"}


def held_out_count(count: int, fraction: float) -> int:
    """`round(count * fraction)`, halves rounded up (Python's round() would send 0.5 to 0)."""
    return math.floor(count * fraction + 0.5)


def check_fraction(name: str, fraction: float) -> None:
    """A held-out fraction must lie strictly between 0 and 1."""
    check(
        isinstance(fraction, int | float) and 0 < fraction < 1,
        f"{name}={fraction!r}: expected a fraction strictly between 0 and 1 of each class's "
        "examples (e.g. 0.1)",
    )


def stratified_split(
    labels: torch.Tensor,
    fractions: Mapping[str, float],
    seed: int,
    class_names: Sequence[str],
    setting: str = "dataset",
) -> dict[str, torch.Tensor]:
    """{"train": indices, <name>: indices for each of `fractions` ("val", "test")}.

    `labels` are int64 class indices [N]; `class_names[c]` names class c in messages; `setting` is
    the config section the fractions live in (`dataset.val_fraction`).
    """
    for name, fraction in fractions.items():
        check_fraction(f"{setting}.{name}_fraction", fraction)
    check(
        sum(fractions.values()) < 1,
        f"{', '.join(f'{setting}.{n}_fraction={f}' for n, f in fractions.items())} add up to "
        f"{sum(fractions.values()):g}: expected less than 1, so that training keeps examples",
    )
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], **{name: [] for name in fractions}}
    sizes = torch.bincount(labels, minlength=len(class_names))
    for label, size in enumerate(sizes.tolist()):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        start = 0
        for name, fraction in fractions.items():
            count = held_out_count(size, fraction)
            parts[name].append(members[start : start + count])
            start += count
        if size:
            check(
                start < size,
                f"class '{class_names[label]}' has {size} example(s), and "
                f"{', '.join(f'{setting}.{n}_fraction={f}' for n, f in fractions.items())} hold "
                f"out all of them, leaving none for training: lower the fractions or add examples",
            )
        parts["train"].append(members[start:])
    largest = int(sizes.max())
    for name, fraction in fractions.items():
        # The smallest fraction that gives the largest class one held-out example.
        least = math.ceil(500 / largest) / 1000
        check(
            sum(len(p) for p in parts[name]) > 0,
            f"{setting}.{name}_fraction={fraction} leaves the {SPLIT_NAMES[name]} split empty: "
            f"{int(sizes.sum())} examples in {len(class_names)} classes (at most {largest} per "
            f"class) give round({largest} * {fraction}) = 0 per class; raise "
            f"{setting}.{name}_fraction to at least {least:g}, or add examples",
        )
    return {name: _shuffled(torch.cat(found), generator) for name, found in parts.items()}


def _shuffled(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return indices[torch.randperm(len(indices), generator=generator)]

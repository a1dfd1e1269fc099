"""Path weights of a space's architectures: the one thing its network sees of them.

`weights[decision]` is a float tensor [rows, len(options)], one row per architecture or ghost batch:
0/1 masks, or real values that carry gradients. `PathWeightCodec` gives every `SearchSpace` the
conversions between architectures and masks and the check of weights handed to a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from nas.errors import check
from nas.spaces.decisions import Decision

Weights = dict[str, torch.Tensor]  # decision name -> float tensor [rows, len(options)]
Masks = Weights  # path weights that are all 0 or 1


class PathWeightCodec:
    """Masks of architectures and back, and the check of path weights (a part of `SearchSpace`).

    Works on `self.decisions`; `decode` builds its result with `self.architecture`.
    """

    decisions: tuple[Decision, ...]

    def encode(self, archs: Sequence) -> Masks:
        """Masks with one row per architecture: masks[name][i, j] = 1 iff arch i chose option j."""
        masks = {}
        for d in self.decisions:
            rows = [[1.0 if o in a[d.name] else 0.0 for o in d.options] for a in archs]
            masks[d.name] = torch.tensor(rows, dtype=torch.float32).reshape(
                len(archs), len(d.options)
            )
        return masks

    def decode(self, masks: Mapping[str, torch.Tensor], row: int = 0):
        """The architecture of one row of 0/1 masks (the inverse of `encode`)."""
        return self.architecture(
            {
                d.name: [
                    o for o, m in zip(d.options, masks[d.name][row].tolist(), strict=True) if m
                ]
                for d in self.decisions
            }
        )

    def full_masks(self, rows: int = 1) -> Masks:
        """All-ones masks (every path on) with `rows` rows."""
        return {d.name: torch.ones(rows, len(d.options)) for d in self.decisions}

    def check_weights(self, weights: Mapping[str, torch.Tensor], rows: int | None = None) -> None:
        """Raise a clear error unless `weights` has every decision with the right width (and rows)."""
        for d in self.decisions:
            check(
                d.name in weights,
                f"path weights lack decision {d.name!r}; expected keys {[x.name for x in self.decisions]}",
            )
            m = weights[d.name]
            check(
                isinstance(m, torch.Tensor) and m.dim() == 2 and m.shape[1] == len(d.options),
                f"path weights {d.name!r} have shape {tuple(getattr(m, 'shape', ()))}, "
                f"expected [rows, {len(d.options)}]",
            )
            if rows is not None:
                check(
                    m.shape[0] in (1, rows),
                    f"path weights {d.name!r} have {m.shape[0]} rows, expected 1 or {rows} (one per ghost batch)",
                )

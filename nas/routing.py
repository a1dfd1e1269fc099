"""Which examples each path of the supernet runs on.

A batch is a sequence of ghost batches, and a path (an input connection or an op of a choice block) is
on for some of them. Two ways to compute Σ_paths mask · path(x) give the same result:
- dense: run every path that any ghost batch uses on the whole batch and multiply by its 0/1 mask
  (the plain definition; used as the reference);
- gathered (default): run a path only on the ghost batches that use it (index_select) and add its output
  back into their rows (index_add). Batch norm is per ghost batch, so a ghost batch's result does not
  depend on which other ghost batches ran beside it, and skipping the rest changes nothing but the cost.
Cheap paths (identity, pooling) always run dense: gathering would cost more than it saves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from nas.ghost_bn import ghost_sizes

Ghost = int | tuple[int, ...] | None  # ghost size, explicit ghost batch sizes, or one batch


class GhostLayout:
    """The ghost batches of one batch: sizes, and example indices of any subset of them.

    `prepare(row_sets)` builds the indices (and 0/1 indicators) of every subset a forward pass will
    use in one CPU buffer and sends it to the device in one copy: one small transfer per step rather
    than one per path, each of which would block the host.
    """

    def __init__(self, batch: int, ghost: Ghost, device: torch.device):
        self.sizes = tuple(ghost_sizes(batch, ghost))
        self.count, self.batch, self.device = len(self.sizes), batch, device
        self.starts = [sum(self.sizes[:i]) for i in range(self.count)]
        self._examples: dict[tuple[int, ...], torch.Tensor] = {}
        self._indicators: dict[tuple[int, ...], torch.Tensor] = {}

    @property
    def ghost(self) -> Ghost:
        """What batch-norm layers get for the whole batch."""
        return _ghost_arg(self.sizes)

    def ghost_of(self, rows: tuple[int, ...]) -> Ghost:
        """What batch-norm layers get for the ghost batches `rows` gathered together."""
        return _ghost_arg(tuple(self.sizes[i] for i in rows))

    def _index(self, rows: tuple[int, ...]) -> list[int]:
        return [j for i in rows for j in range(self.starts[i], self.starts[i] + self.sizes[i])]

    def prepare(self, row_sets: Iterable[tuple[int, ...]]) -> None:
        """Send the example indices and indicators of every subset in `row_sets` in one copy."""
        todo = [
            r for r in dict.fromkeys(row_sets) if r not in self._examples and len(r) < self.count
        ]
        if not todo:
            return
        indices = [self._index(r) for r in todo]
        flat = torch.tensor([j for index in indices for j in index], dtype=torch.long)
        marks = torch.zeros(len(todo), self.batch)
        for k, index in enumerate(indices):
            marks[k, index] = 1.0
        if self.device.type == "cuda":  # pinned memory: the copies do not wait for the device
            flat, marks = flat.pin_memory(), marks.pin_memory()
        flat = flat.to(self.device, non_blocking=True)
        marks = marks.to(self.device, non_blocking=True)
        offset = 0
        for k, (rows, index) in enumerate(zip(todo, indices, strict=True)):
            self._examples[rows] = flat[offset : offset + len(index)]
            self._indicators[rows] = marks[k].view(-1, 1, 1, 1)
            offset += len(index)

    def examples(self, rows: tuple[int, ...]) -> torch.Tensor:
        """Indices [n] on the device of the examples of the ghost batches `rows`."""
        self.prepare([rows])
        return self._examples[rows]

    def indicator(self, rows: tuple[int, ...]) -> torch.Tensor:
        """[batch, 1, 1, 1] float on the device: 1 for examples of the ghost batches `rows`, else 0."""
        self.prepare([rows])
        return self._indicators[rows]


def _ghost_arg(sizes: tuple[int, ...]) -> Ghost:
    return sizes[0] if len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0] else sizes


class PathMask:
    """One decision's 0/1 mask for a batch: for every option, the ghost batches that use it."""

    def __init__(self, options: Sequence[str], rows: torch.Tensor, layout: GhostLayout):
        on = rows.detach().cpu().bool()  # masks are drawn on the CPU: reading them costs no sync
        if on.shape[0] == 1:
            on = on.expand(layout.count, -1)
        self.layout = layout
        self.rows = {}
        for j, option in enumerate(options):
            used = tuple(torch.nonzero(on[:, j]).flatten().tolist())
            if used:
                self.rows[option] = used
        self.any = tuple(torch.nonzero(on.any(1)).flatten().tolist())  # ghost batches with any path

    def restricted(self, keep: tuple[int, ...]) -> PathMask:
        """The same mask with every option limited to the ghost batches `keep`."""
        if len(keep) == self.layout.count:
            return self
        other = object.__new__(PathMask)
        other.layout, kept = self.layout, set(keep)
        other.rows = {
            o: r
            for o, r in ((o, tuple(i for i in r if i in kept)) for o, r in self.rows.items())
            if r
        }
        other.any = tuple(i for i in self.any if i in kept)
        return other


def masked_sum(
    names: Sequence[str],
    run: Callable[[str, torch.Tensor, Ghost], torch.Tensor],
    inputs: Callable[[str], torch.Tensor],
    mask: PathMask | None,
    cheap: Callable[[str], bool],
    dense: bool = False,
    ghost: Ghost = None,
) -> torch.Tensor | None:
    """Σ over `names` of mask · run(name, inputs(name), ghost); None when no path is on.

    Without a mask (stand-alone networks) every name is on for every example.
    """
    total = None
    for name in names:
        if mask is None:
            term = run(name, inputs(name), ghost)
            total = term if total is None else total + term
            continue
        rows = mask.rows.get(name)
        if rows is None:
            continue  # no ghost batch uses this path
        layout, x = mask.layout, inputs(name)
        if len(rows) == layout.count:
            term = run(name, x, layout.ghost)
        elif dense or cheap(name):
            term = run(name, x, layout.ghost) * layout.indicator(rows).to(x.dtype)
        else:
            index = layout.examples(rows)
            part = run(name, x.index_select(0, index), layout.ghost_of(rows))
            base = torch.zeros((x.shape[0], *part.shape[1:]), dtype=part.dtype, device=part.device)
            total = (base if total is None else total).index_add(
                0, index, part.to(base.dtype if total is None else total.dtype)
            )
            continue
        total = term if total is None else total + term
    return total

"""Which examples each path of the supernet runs on, and with what weight.

A batch is a sequence of ghost batches, and a path (an input connection or an op of a choice block) has
a weight in each of them (0/1 for a mask). Two ways to compute Σ_paths weight · path(x) give the same
result:
- dense: run every path that any ghost batch uses on the whole batch and multiply by its weight
  (the plain definition; used as the reference);
- gathered (default): run a path only on the ghost batches that use it (index_select) and add its output
  back into their rows (index_add). Batch norm is per ghost batch, so a ghost batch's result does not
  depend on which other ghost batches ran beside it, and skipping the rest changes nothing but the cost.
Cheap paths (identity, pooling) always run dense: gathering would cost more than it saves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from nas.ghost_bn import ghost_sizes, per_example

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


class PathWeights:
    """One decision's path weights for a batch: for every option, the ghost batches where its weight
    is non-zero, and (`scaled`) whether the weights must be multiplied in.

    0/1 weights that carry no gradient are masks: the kept paths' outputs are used as they are.
    Otherwise every kept output is multiplied by its ghost batch's weight, so gradients reach it.
    """

    def __init__(self, options: Sequence[str], values: torch.Tensor, host: torch.Tensor, layout):
        self.layout, self.values = layout, values
        self.column = {o: j for j, o in enumerate(options)}
        on = host != 0
        self.scaled = values.requires_grad or not bool(((host == 0) | (host == 1)).all())
        columns = on.t().tolist()  # one host read, then plain Python: G and k are small
        if on.shape[0] == 1:
            columns = [col * layout.count for col in columns]
        self.rows = {}
        for option, col in zip(options, columns, strict=True):
            used = tuple(i for i, v in enumerate(col) if v)
            if used:
                self.rows[option] = used
        self.any = tuple(sorted({i for r in self.rows.values() for i in r}))  # any path on
        self._per_example: torch.Tensor | None = None

    @staticmethod
    def for_decisions(decisions: dict, layout: GhostLayout) -> dict[str, PathWeights]:
        """{name: PathWeights} for {name: (options, values)}, reading every value in one host copy."""
        values = [v for _, v in decisions.values()]
        if all(v.device.type == "cpu" for v in values):  # masks drawn on the CPU: nothing to copy
            hosts = [v.detach() for v in values]
        else:
            flat = torch.cat([v.detach().reshape(-1).float() for v in values]).cpu()
            hosts = list(flat.split([v.numel() for v in values]))
            hosts = [h.view(v.shape) for h, v in zip(hosts, values, strict=True)]
        return {
            name: PathWeights(options, v, h, layout)
            for (name, (options, v)), h in zip(decisions.items(), hosts, strict=True)
        }

    def scale(self, option: str, index: torch.Tensor | None = None) -> torch.Tensor:
        """Weights of `option` per example [n, 1, 1, 1], for `index` or every example."""
        if self._per_example is None:
            values = self.values.to(self.layout.device)
            self._per_example = per_example(values, self.layout.batch, self.layout.sizes)
        column = self._per_example[:, self.column[option]]
        return (column if index is None else column[index]).view(-1, 1, 1, 1)

    def restricted(self, keep: tuple[int, ...]) -> PathWeights:
        """The same weights with every option limited to the ghost batches `keep`."""
        if len(keep) == self.layout.count:
            return self
        other = object.__new__(PathWeights)
        other.__dict__.update(self.__dict__)
        kept = set(keep)
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
    weights: PathWeights | None,
    cheap: Callable[[str], bool],
    dense: bool = False,
    ghost: Ghost = None,
) -> torch.Tensor | None:
    """Σ over `names` of weight · run(name, inputs(name), ghost); None when no path is on.

    Without weights (stand-alone networks) every name is on for every example.
    """
    total = None
    for name in names:
        if weights is None:
            term = run(name, inputs(name), ghost)
            total = term if total is None else total + term
            continue
        rows = weights.rows.get(name)
        if rows is None:
            continue  # no ghost batch uses this path
        layout, x = weights.layout, inputs(name)
        if len(rows) == layout.count:
            term = run(name, x, layout.ghost)
        elif dense or cheap(name):
            term = run(name, x, layout.ghost) * layout.indicator(rows).to(x.dtype)
        else:
            index = layout.examples(rows)
            part = run(name, x.index_select(0, index), layout.ghost_of(rows))
            if weights.scaled:
                part = part * weights.scale(name, index).to(part.dtype)
            base = torch.zeros((x.shape[0], *part.shape[1:]), dtype=part.dtype, device=part.device)
            total = (base if total is None else total).index_add(
                0, index, part.to(base.dtype if total is None else total.dtype)
            )
            continue
        if weights.scaled:
            term = term * weights.scale(name).to(term.dtype)
        total = term if total is None else total + term
    return total

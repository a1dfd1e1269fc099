"""The ENAS macro search space (Pham et al., ICML 2018): a whole network of L layers, searched layer by layer.

Layer i chooses one of six ops (decision "layer{i}/op") applied to layer i-1's output (layer 0: the
stem's), and any subset of earlier outputs it adds as skip connections ("layer{i}/skip", a pointer
decision: its options are the outputs). Which outputs a skip may reach is the `wiring`:

- "layers" (the default, this project's original wiring, kept for its checkpoints): the earlier
  layers "layer0".."layer{i-1}", the layer's own input included;
- "authors" (the authors' code, `general_child.py`): the stem and the layers before the input,
  "stem", "layer0".."layer{i-2}". There, skip bit j of layer i reads `prev_layers[j]`, and
  `prev_layers` starts with the stem and ends with layer i-1, the input, which no bit reaches.

Either way layer i has i skip candidates, so with L = 12 and the six ops there are
6^12 x 2^(12*11/2) = 6^12 x 2^66, about 1.6 x 10^29 networks, as the paper counts. The authors number
the ops conv3x3, sep3x3, conv5x5, sep5x5, avgpool3x3, maxpool3x3 (`AUTHORS_MACRO_OPS`); an
architecture written as the authors' scripts write one (`--child_fixed_arc`) reads with
`parse_arc` into a space of their wiring and op order (conf/search_space/enas_macro_authors.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import check
from nas.spaces.base import Architecture, Decision, Node, SearchSpace

MACRO_OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "avgpool3x3", "maxpool3x3")
AUTHORS_MACRO_OPS = ("conv3x3", "sep3x3", "conv5x5", "sep5x5", "avgpool3x3", "maxpool3x3")
WIRINGS = ("layers", "authors")
STEM = "stem"


class EnasMacroSpace(SearchSpace):
    """Decisions "layer0/op", then "layer{i}/op" and "layer{i}/skip" for i = 1..layers-1.

    "layer{i}/op": exactly one of `ops`; "layer{i}/skip": any subset (none included) of the i
    outputs `skip_options(i)`. The nodes are the outputs a skip can reach, each anchored where the
    ENAS controller makes it: with wiring "layers", layer 0 after its op is chosen and layer i >= 1
    with its skips; with wiring "authors", as the authors' controller anchors skip bit j at its
    layer-j step, the stem after layer 0's op and layer j with layer j+1's skips.
    """

    name = "enas_macro"

    def __init__(
        self, layers: int = 12, ops: Sequence[str] = MACRO_OPS, wiring: str = "layers"
    ) -> None:
        check(
            isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1,
            f"search_space.layers={layers!r} must be an integer >= 1 (ENAS searches 12 layers)",
        )
        check(
            not isinstance(ops, str) and isinstance(ops, Sequence),
            f"search_space.ops={ops!r} must be a list of op names, e.g. {list(MACRO_OPS)}",
        )
        ops = tuple(ops)
        unknown = [o for o in ops if o not in MACRO_OPS]
        check(
            not unknown,
            f"search_space.ops has unknown op(s) {unknown}; ENAS macro ops: {list(MACRO_OPS)}",
        )
        check(
            len(ops) >= 1 and len(set(ops)) == len(ops),
            f"search_space.ops={list(ops)} must list at least one op, each once, e.g. {list(MACRO_OPS)}",
        )
        check(
            wiring in WIRINGS,
            f"search_space.wiring={wiring!r} is unknown; choose one of {list(WIRINGS)} (layers: "
            f"skips to layers 0..i-1; authors: to the stem and layers 0..i-2, as general_child.py)",
        )
        self.layers, self.ops, self.wiring = layers, ops, wiring
        decisions = []
        for i in range(layers):
            decisions.append(Decision(f"layer{i}/op", ops, min_k=1, max_k=1))
            if i >= 1:
                options = self.skip_options(i)
                decisions.append(
                    Decision(f"layer{i}/skip", options, min_k=0, max_k=i, pointer=True)
                )
        super().__init__(decisions)

    def skip_options(self, i: int) -> tuple[str, ...]:
        """The outputs layer i may skip to, in the order of the authors' skip bits."""
        if self.wiring == "authors":
            return (STEM,) + tuple(f"layer{j}" for j in range(i - 1))
        return tuple(f"layer{j}" for j in range(i))

    def spec(self) -> dict:
        spec = {"name": self.name, "layers": self.layers, "ops": list(self.ops)}
        if self.wiring != "layers":  # earlier checkpoints' specs stay as they were
            spec["wiring"] = self.wiring
        return spec

    def nodes(self) -> tuple[Node, ...]:
        if self.wiring == "authors":
            return (Node(STEM, "layer0/op", "after"),) + tuple(
                Node(f"layer{j}", f"layer{j + 1}/skip", "at") for j in range(self.layers - 1)
            )
        return (Node("layer0", "layer0/op", "after"),) + tuple(
            Node(f"layer{i}", f"layer{i}/skip", "at") for i in range(1, self.layers)
        )


def parse_arc(space: EnasMacroSpace, arc: str | Sequence[int]) -> Architecture:
    """The architecture of an arc in the authors' format (`--child_fixed_arc`, whole channels):
    per layer i, its op id, then i skip bits (bit j: skip to `space.skip_options(i)[j]`).

    The ids are the authors' only in a space of their wiring and op order (AUTHORS_MACRO_OPS, or
    its first ops: the final scripts' `--child_num_branches=4`); other spaces are refused.
    """
    _check_authors_space(space)
    ids = _integers(arc)
    expected = space.layers * (space.layers + 1) // 2
    check(
        len(ids) == expected,
        f"arc has {len(ids)} numbers; {space.layers} layers take {expected} (layer i: an op id "
        f"and i skip bits); an arc of n layers has n(n+1)/2, set search_space.layers to match",
    )
    choices, at = {}, 0
    for i in range(space.layers):
        op = ids[at]
        check(
            0 <= op < len(space.ops),
            f"arc: layer {i}'s op id {op} is not one of 0..{len(space.ops) - 1} ({list(space.ops)})",
        )
        choices[f"layer{i}/op"] = [space.ops[op]]
        bits = ids[at + 1 : at + 1 + i]
        check(
            all(b in (0, 1) for b in bits),
            f"arc: layer {i}'s skip bits {bits} must each be 0 or 1",
        )
        if i:
            options = space.skip_options(i)
            choices[f"layer{i}/skip"] = [o for o, b in zip(options, bits, strict=True) if b]
        at += 1 + i
    return space.architecture(choices)


def format_arc(arch: Architecture) -> str:
    """`arch` in the authors' format (the inverse of `parse_arc`): op id and skip bits per layer."""
    space = arch.space
    _check_authors_space(space)
    ids = []
    for i in range(space.layers):
        ids.append(space.ops.index(arch[f"layer{i}/op"][0]))
        if i:
            ids += [int(o in arch[f"layer{i}/skip"]) for o in space.skip_options(i)]
    return " ".join(map(str, ids))


def _check_authors_space(space: EnasMacroSpace) -> None:
    check(
        isinstance(space, EnasMacroSpace),
        f"an arc in the authors' macro format needs the enas_macro space, got {space.name!r}",
    )
    check(
        space.wiring == "authors" and space.ops == AUTHORS_MACRO_OPS[: len(space.ops)],
        f"an arc in the authors' format needs their wiring and op order (search_space."
        f"wiring=authors, ops={list(AUTHORS_MACRO_OPS)}), got wiring={space.wiring!r}, "
        f"ops={list(space.ops)}; use search_space=enas_macro_authors",
    )


def _integers(arc: str | Sequence[int]) -> list[int]:
    """The numbers of an arc given as text (spaces or commas between them) or as integers."""
    if isinstance(arc, str):
        words = arc.replace(",", " ").split()
        check(
            all(w.lstrip("-").isdigit() for w in words),
            f"arc {arc[:80]!r} must be integers separated by spaces, as in the authors' scripts",
        )
        return [int(w) for w in words]
    return [int(v) for v in arc]

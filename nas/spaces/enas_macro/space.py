"""The ENAS macro search space (Pham et al., ICML 2018): a whole network of L layers, searched layer by layer.

Layer i chooses one of six ops (decision "layer{i}/op") applied to layer i-1's output, and any subset
of the earlier layers 0..i-1 whose outputs it adds as skip connections ("layer{i}/skip", a pointer
decision: its options are the layers). With L = 12 and the six ops there are
6^12 x 2^(12*11/2) = 6^12 x 2^66, about 1.6 x 10^29 networks, as the paper counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.errors import check
from nas.spaces.base import Decision, Node, SearchSpace

MACRO_OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "avgpool3x3", "maxpool3x3")


class EnasMacroSpace(SearchSpace):
    """Decisions "layer0/op", then "layer{i}/op" and "layer{i}/skip" for i = 1..layers-1.

    "layer{i}/op": exactly one of `ops`; "layer{i}/skip": any subset (none included) of
    "layer0".."layer{i-1}". The nodes are the layers: layer 0 is complete after its op is chosen,
    layer i >= 1 comes into being with its skips (the ENAS controller's anchor for that layer).
    """

    name = "enas_macro"

    def __init__(self, layers: int = 12, ops: Sequence[str] = MACRO_OPS):
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
        self.layers, self.ops = layers, ops
        decisions = []
        for i in range(layers):
            decisions.append(Decision(f"layer{i}/op", ops, min_k=1, max_k=1))
            if i >= 1:
                earlier = tuple(f"layer{j}" for j in range(i))
                decisions.append(
                    Decision(f"layer{i}/skip", earlier, min_k=0, max_k=i, pointer=True)
                )
        super().__init__(decisions)

    def spec(self) -> dict:
        return {"name": self.name, "layers": self.layers, "ops": list(self.ops)}

    def nodes(self) -> tuple[Node, ...]:
        return (Node("layer0", "layer0/op", "after"),) + tuple(
            Node(f"layer{i}", f"layer{i}/skip", "at") for i in range(1, self.layers)
        )

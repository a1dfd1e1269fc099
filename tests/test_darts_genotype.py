"""DARTS genotype strings of darts_cell architectures: round trips, refusals."""

from __future__ import annotations

import random
from collections import namedtuple

import pytest

from nas.errors import NasError
from nas.spaces.darts_cell import DartsCellSpace
from nas.spaces.darts_cell.genotype import DARTS_V2, from_genotype, parse_genotype, to_genotype

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")  # DARTS's


def _by_node(pairs):
    """The (op, index) pairs of each node, order within a node ignored."""
    return [sorted(pairs[k : k + 2]) for k in range(0, len(pairs), 2)]


def _random_derived(space, seed):
    rng = random.Random(seed)
    strengths = {d.name: [rng.random() for _ in d.options] for d in space.decisions}
    return space.derive(strengths)


def test_darts_v2_round_trip():
    space = DartsCellSpace()
    arch = space.from_genotype(DARTS_V2)
    assert arch["normal/3<-0"] == ("dil3x3",) and arch["normal/0<-in1"] == ("sep3x3",)
    assert arch["reduce/1<-0"] == ("identity",) and arch["reduce/3<-in0"] == ("maxpool3x3",)
    assert sum(len(arch[d.name]) for d in space.decisions) == 16
    text = space.to_genotype(arch)
    # Exact up to the order of the two pairs of a node (DARTS orders them by strength, which an
    # architecture does not keep); then stable.
    original, written = parse_genotype(DARTS_V2), parse_genotype(text)
    for cell in ("normal", "reduce"):
        assert _by_node(written[cell]) == _by_node(original[cell])
        assert written[f"{cell}_concat"] == original[f"{cell}_concat"] == [2, 3, 4, 5]
    assert space.from_genotype(text) == arch
    assert space.to_genotype(space.from_genotype(text)) == text
    # The DARTS code's eval reads it.
    genotype = eval(text, {"Genotype": Genotype, "range": range})  # noqa: S307
    assert genotype.normal[-1] == ("dil_conv_3x3", 2) and list(genotype.reduce_concat) == [
        2,
        3,
        4,
        5,
    ]


def test_published_list_concat_is_read():
    space = DartsCellSpace()
    text = DARTS_V2.replace("range(2, 6)", "[2, 3, 4, 5]").replace("'", '"')
    assert space.from_genotype(text) == space.from_genotype(DARTS_V2)


@pytest.mark.parametrize("seed", range(20))
def test_random_derived_round_trip(seed):
    space = DartsCellSpace()
    arch = _random_derived(space, seed)
    text = to_genotype(arch)
    assert from_genotype(text, space) == arch
    assert space.to_genotype(space.from_genotype(text)) == text


def test_same_input_twice_is_one_edge_with_two_ops():
    space = DartsCellSpace()
    text = DARTS_V2.replace(
        "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0)",
        "('sep_conv_3x3', 0), ('max_pool_3x3', 0), ('sep_conv_3x3', 0)",
        1,
    )
    arch = space.from_genotype(text)
    assert arch["normal/0<-in1"] == ("sep3x3", "maxpool3x3") and arch["normal/0<-in0"] == ()
    assert space.from_genotype(space.to_genotype(arch)) == arch


def test_bayesnas_edges_round_trip_and_missing_edge():
    space = DartsCellSpace.bayesnas()
    arch = _random_derived(space, 0)
    assert space.from_genotype(space.to_genotype(arch)) == arch
    # DARTS_V2's normal node 3 reads c_{k-2} (in1): BayesNAS's normal node 3 has no such edge.
    with pytest.raises(NasError, match=r"pair 6 .* edge '3<-in1' is not in the space's normal"):
        space.from_genotype(DARTS_V2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("Genotype(normal=[", "not valid syntax"),
        ("[('sep_conv_3x3', 0)]", "not a call Genotype"),
        ("Geno(normal=[])", r"got Geno\(\.\.\.\)"),
        (DARTS_V2.replace("reduce_concat", "concat"), "keyword arguments are"),
        (
            DARTS_V2.replace("normal_concat=range(2, 6)", "normal_concat=range(2, 5)"),
            "normal_concat",
        ),
        (DARTS_V2.replace("normal_concat=range(2, 6)", "normal_concat=6"), "must be range"),
        (
            DARTS_V2.replace("('dil_conv_3x3', 2)", "('conv_7x1_1x7', 2)"),
            "unknown op 'conv_7x1_1x7'",
        ),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('none', 2)"), "unknown op 'none'"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "input index 5"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', '2')"), "item 7"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 2, 1)"), "item 7"),
        (DARTS_V2.replace(", ('dil_conv_3x3', 2)", ""), "has 7 pairs"),
        (DARTS_V2.replace("normal=[", "normal=__import__('os'), x=["), "keyword arguments"),
        (
            DARTS_V2.replace(
                "('sep_conv_3x3', 0), ('sep_conv_3x3', 1)",
                "('sep_conv_3x3', 0), ('sep_conv_3x3', 0)",
                1,
            ),
            r"lists \('sep_conv_3x3', 0\) twice",
        ),
        (42, "not a string"),
    ],
)
def test_malformed_refused(text, message):
    with pytest.raises(NasError, match=message) as err:
        DartsCellSpace().from_genotype(text)
    assert "Genotype(normal=[" in str(err.value) or "twice" in str(err.value)


def test_op_outside_the_space_refused():
    space = DartsCellSpace(ops=("sep3x3", "maxpool3x3", "identity"))
    with pytest.raises(NasError, match=r"'dil_conv_3x3' \(dil3x3\) is not among the space's ops"):
        space.from_genotype(DARTS_V2)


def test_non_genotype_architectures_refused():
    space = DartsCellSpace()
    arch = space.from_genotype(DARTS_V2)
    choices = dict(arch.choices)
    choices["normal/1<-0"] = ("sep5x5",)  # node 1: three inputs
    with pytest.raises(
        NasError, match=r"not a DARTS genotype.*normal cell node 1: \['sep3x3<-in0'"
    ):
        space.to_genotype(space.architecture(choices))
    choices = dict(arch.choices)
    choices["reduce/0<-in1"] = ()  # node 0: one input
    with pytest.raises(NasError, match=r"exactly 2 \(op, input\) pairs.*reduce cell node 0"):
        to_genotype(space.architecture(choices))
    with pytest.raises(NasError, match="not a DARTS genotype"):
        space.to_genotype(space.all_on())
    with pytest.raises(NasError, match="not from this darts_cell space"):
        DartsCellSpace.bayesnas().to_genotype(arch)

"""ENAS recurrent cells: the space's count, the cell against a hand-built one, BPTT state, rewards,
derive and stand-alone retraining, exact resume after a kill in either phase."""

from __future__ import annotations

import json
import math
import random
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nas.errors import NasError
from nas.methods.enas.reinforce import Reinforce
from nas.methods.enas_rnn.module import ENASRNNModule
from nas.results.store import ResultsStore
from nas.spaces import Architecture
from nas.spaces.enas_rnn import EnasRnnSpace, loose_ends
from tests.conftest import compose_config
from tests.test_resume import _assert_same_end, _last, _train_in_process

SMOKE = ["experiment=smoke_enas_rnn"]
# 3 epochs of 4 BPTT batches (then 3 controller updates each); last.ckpt every 2 steps
COMMON = ["trainer.max_epochs=3", "callbacks.last.every_n_train_steps=2"]
WORDS = "the cat sat on a mat dog ran to house big small red <unk>".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small corpus in PTB's format (random sentences over 14 words)."""
    root = tmp_path_factory.mktemp("tiny_ptb")
    rng = random.Random(0)
    for name, lines in (("train", 40), ("valid", 12), ("test", 12)):
        sentences = [" ".join(rng.choices(WORDS, k=rng.randint(3, 8))) for _ in range(lines)]
        (root / f"ptb.{name}.txt").write_text("".join(f" {s} \n" for s in sentences))
    return root


def _smoke(corpus: Path) -> list[str]:
    return [*SMOKE, f"dataset.data_dir={corpus}"]


# -- the space -----------------------------------------------------------------------------------
@pytest.mark.parametrize("nodes", [1, 2, 3, 4, 5, 12])
def test_count_is_four_to_the_n_times_n_minus_one_factorial(nodes):
    space = EnasRnnSpace(nodes=nodes)
    assert space.count() == 4**nodes * math.factorial(nodes - 1) == space.size_formula()
    if nodes <= 4:  # by enumeration: every architecture once
        assert len(set(space.enumerate())) == space.count()


def test_architectures_name_earlier_nodes_only():
    space = EnasRnnSpace(nodes=3)
    choices = {"node1/act": ["relu"], "node2/input": ["node1"], "node2/act": ["tanh"]}
    chain = space.architecture({**choices, "node3/input": ["node2"], "node3/act": ["sigmoid"]})
    fork = space.architecture({**choices, "node3/input": ["node1"], "node3/act": ["identity"]})
    assert loose_ends(chain) == (3,) and loose_ends(fork) == (2, 3)
    with pytest.raises(NasError, match="unknown option"):
        space.architecture({**choices, "node3/input": ["node3"], "node3/act": ["tanh"]})
    with pytest.raises(NasError, match="search_space.nodes"):
        EnasRnnSpace(nodes=0)
    with pytest.raises(NasError, match="unknown name"):
        EnasRnnSpace(activations=["tanh", "elu"])


def _hand_built(net, arch_spec, tokens, hidden):
    """The cell written out by hand: node 1 from (x, h), node l from its input, highway, mean of
    the loose ends; `arch_spec` = (act1, [(input, act) for nodes 2..N], loose ends)."""
    act1, later, ends = arch_spec
    fn = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v, "sigmoid": torch.sigmoid}
    size = net.config["hidden"]
    h, outs = hidden, []
    for t in range(tokens.shape[1]):
        x = net.embedding.weight[tokens[:, t]]
        pre = x @ net.w_x.weight.t() + h @ net.w_h.weight.t()
        a, g = pre[:, :size], torch.sigmoid(pre[:, size:])
        nodes = {1: g * fn[act1](a) + (1 - g) * h}
        for node, (j, act) in enumerate(later, start=2):
            pre = nodes[j] @ net.edges[f"{node}_{j}"].weight.t()
            a, g = pre[:, :size], torch.sigmoid(pre[:, size:])
            nodes[node] = g * fn[act](a) + (1 - g) * nodes[j]
        h = sum(nodes[k] for k in ends) / len(ends)
        outs.append(h)
    logits = torch.stack(outs, 1) @ net.embedding.weight.t() + net.decoder_bias
    return logits, h


@pytest.mark.parametrize(
    "spec",
    [
        ("relu", [(1, "tanh"), (1, "sigmoid")], (2, 3)),
        ("tanh", [(1, "identity"), (2, "relu")], (3,)),
    ],
    ids=["fork", "chain"],
)
def test_hand_built_three_node_cell_equals_the_supernet_path(spec):
    space = EnasRnnSpace(nodes=3)
    act1, later, ends = spec
    choices = {"node1/act": [act1]}
    for node, (j, act) in enumerate(later, start=2):
        choices |= {f"node{node}/input": [f"node{j}"], f"node{node}/act": [act]}
    arch = space.architecture(choices)
    assert loose_ends(arch) == ends
    torch.manual_seed(0)
    net = space.build_supernet(num_classes=7, hidden=5).double()
    tokens = torch.randint(0, 7, (3, 4), generator=torch.Generator().manual_seed(1))
    start = torch.randn(3, 5, dtype=torch.float64)
    logits, h = net.run(tokens, start, space.encode([arch]))
    expected, expected_h = _hand_built(net, spec, tokens, start)
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, expected_h, rtol=1e-10, atol=1e-12)
    # a second window from the carried state continues the same computation
    more = torch.randint(0, 7, (3, 2), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        net.run(more, h, space.encode([arch]))[0], _hand_built(net, spec, more, h)[0]
    )


def test_child_draws_the_same_dropout_as_the_supernet_path():
    """In training mode (variational, embedding dropout) both draw the same masks in turn."""
    space = EnasRnnSpace(nodes=4)
    rates = {"dropout": 0.3, "dropout_hidden": 0.2, "dropout_input": 0.4, "dropout_embed": 0.1}
    torch.manual_seed(0)
    net = space.build_supernet(num_classes=9, hidden=6, **rates).double().train()
    tokens = torch.randint(0, 9, (4, 5), generator=torch.Generator().manual_seed(3))
    for arch in (space.sample(random.Random(s)) for s in range(3)):
        child = net.extract(arch, copy_weights=True).train()
        torch.manual_seed(5)
        ours = child(tokens)
        torch.manual_seed(5)
        torch.testing.assert_close(ours, net(tokens, space.encode([arch])))
        torch.manual_seed(5)
        assert not torch.allclose(ours, net.eval()(tokens, space.encode([arch])))
        net.train()


def test_cell_output_norm_is_capped():
    space = EnasRnnSpace(nodes=2, activations=["identity"])
    torch.manual_seed(0)
    net = space.build_supernet(num_classes=5, hidden=4, max_hidden_norm=0.5)
    with torch.no_grad():
        net.w_x.weight.mul_(50)
    _, h = net.run(
        torch.zeros(3, 6, dtype=torch.long), None, space.encode([space.sample(random.Random(0))])
    )
    assert torch.allclose(h.norm(dim=1), torch.full((3,), 0.5))


def test_module_refuses_another_space():
    from nas.spaces.enas_macro import EnasMacroSpace

    with pytest.raises(NasError, match="search_space=enas_rnn"):
        ENASRNNModule(EnasMacroSpace(layers=2), num_classes=5, hidden=4)


def test_image_settings_and_image_data_are_one_clear_error():
    import lightning as L

    from nas.data import DigitsDataModule

    with pytest.raises(NasError, match="model=enas_rnn"):  # e.g. model=enas search_space=enas_rnn
        EnasRnnSpace(nodes=2).build_supernet(filters=4, cells=2, stages=2, num_classes=5)
    module = ENASRNNModule(EnasRnnSpace(nodes=2), num_classes=10, hidden=4)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, barebones=True)
    with pytest.raises(NasError, match="text dataset .* not DigitsDataModule"):
        trainer.fit(module, datamodule=DigitsDataModule())


def test_window_perplexity_is_the_child_on_its_window():
    space = EnasRnnSpace(nodes=3)
    module = ENASRNNModule(space, num_classes=9, hidden=6, controller={"hidden": 8}).double()
    module.eval()
    stream = torch.randint(0, 9, (2, 30), generator=torch.Generator().manual_seed(0))
    archs = [space.sample(random.Random(s)) for s in range(3)]
    state = module.controller_generator.get_state()
    ppls = module.window_perplexities(archs, stream, 5)
    module.controller_generator.set_state(state)
    starts = torch.randint(0, 30 - 5, (3,), generator=module.controller_generator).tolist()
    for arch, start, ppl in zip(archs, starts, ppls, strict=True):
        child = module.supernet.extract(arch, copy_weights=True).eval()
        logits = child(stream[:, start : start + 5])
        nll = F.cross_entropy(logits.flatten(0, 1), stream[:, start + 1 : start + 6].flatten())
        assert ppl == pytest.approx(math.exp(float(nll.detach())), rel=1e-6)  # scored in float32


# -- training ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(corpus, tmp_path_factory) -> dict:
    """One 2-epoch smoke run, recording the state every batch starts from and the rewards."""
    run = tmp_path_factory.mktemp("enas-rnn-recorded")
    calls: list[tuple] = []
    rewards: list[tuple] = []
    train_run, window = ENASRNNModule.train_run, ENASRNNModule.window_perplexities
    update = Reinforce.update

    def record_train(self, x, hidden):
        out = train_run(self, x, hidden)
        calls.append(
            (x.clone(), None if hidden is None else hidden.clone(), out[1].detach().clone())
        )
        return out

    def record_window(self, *args):
        ppls = window(self, *args)
        rewards.append(("ppl", ppls))
        return ppls

    def record_update(self, archs, values, *args):
        rewards.append(("reward", list(values)))
        return update(self, archs, values, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ENASRNNModule, "train_run", record_train)
        patch.setattr(ENASRNNModule, "window_perplexities", record_window)
        patch.setattr(Reinforce, "update", record_update)
        _train_in_process(run, *_smoke(corpus), "trainer.max_epochs=2")
    return {"run": run, "calls": calls, "rewards": rewards}


def test_bptt_state_is_carried_across_batches_and_reset_every_epoch(recorded, corpus):
    from nas.data.text import TextDataModule

    calls = recorded["calls"]
    assert len(calls) == 8  # 2 epochs of 4 batches
    stream = TextDataModule(str(corpus), batch_size=4, bptt=5, train_tokens=84).stream("train")
    for i, (x, hidden, _) in enumerate(calls):
        batch = i % 4
        assert torch.equal(x, stream[:, batch * 5 : batch * 5 + 5])  # the stream, in order
        if batch == 0:
            assert hidden is None  # every epoch starts from zeros
        else:
            assert torch.equal(hidden, calls[i - 1][2])  # from where the last batch ended
    ckpt = _last(recorded["run"])
    assert torch.equal(ckpt["bptt_hidden"], calls[-1][2])  # the checkpoint carries it on


def test_rewards_are_c_over_validation_window_perplexity(recorded):
    events = recorded["rewards"]
    assert [kind for kind, _ in events] == ["ppl", "reward"] * 6  # 3 updates per epoch
    for (_, ppls), (_, values) in zip(events[::2], events[1::2], strict=True):
        assert len(values) == 2 and values == pytest.approx([80.0 / p for p in ppls])


def test_derive_scores_cells_by_validation_perplexity_then_retrains_the_best(
    recorded, corpus, tmp_path
):
    import train

    run = recorded["run"]
    out = run / "search" / "controller"
    ckpt = _last(run)
    module = ENASRNNModule(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    with ResultsStore(out / "results.sqlite") as store:
        rows = store.ranking()
    assert len(rows) == 3 and len({r["arch_id"] for r in rows}) == 3
    from nas.data.text import TextDataModule

    val = TextDataModule(str(corpus), eval_batch_size=2, bptt=5).stream("val")
    for row in rows:  # score = 80 / perplexity of the child, state carried over the whole split
        arch = Architecture.from_json(row["arch_json"], module.space)
        child = module.supernet.extract(arch, copy_weights=True).eval()
        logits, _ = child.run(val[:, :-1])
        nll = F.cross_entropy(logits.flatten(0, 1), val[:, 1:].flatten())
        assert row["oneshot_acc"] == pytest.approx(80.0 / math.exp(float(nll.detach())), rel=1e-5)
    report = json.loads((out / "outputs.json").read_text())
    assert report["best_val_ppl"] == pytest.approx(80.0 / rows[0]["oneshot_acc"])
    best = Path(report["selections"]["top"]).read_text().split()[0]
    assert Path(report["selections"]["top"]).read_text().split() == [best]  # the best cell alone
    assert Architecture.load(best).id == rows[0]["arch_id"] == report["best_arch_id"]
    retrain = tmp_path / "retrain"
    overrides = [
        "experiment=quickstart_enas_rnn_standalone",
        f"arch={best}",
        f"dataset.data_dir={corpus}",
        "dataset.vocab_size=null",
        "dataset.batch_size=4",
        "dataset.eval_batch_size=2",
        "dataset.bptt=5",
        "dataset.train_tokens=84",
        "model.hidden=8",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    ]
    train.train(compose_config("train", overrides, retrain))
    result = json.loads((retrain / "result.json").read_text())
    assert (
        result["arch_id"] == Architecture.load(best).id and result["kind"] == "StandaloneLMModule"
    )
    assert math.isfinite(result["test_loss"]) and 0 <= result["val_acc"] <= 1


@pytest.mark.parametrize(
    "preset, expected",
    [
        (None, {"controller_lr": 3.5e-4, "controller_steps": 2000, "entropy_weight": 1e-4}),
        (
            "rnn_corrected_code",
            {
                "controller_lr": 5e-5,
                "controller_steps": 25,
                "controller_aggregate": 10,
                "baseline_decay": 0.999,
                "entropy_weight": 1e-5,
            },
        ),
    ],
)
def test_ptb_presets_select_the_controller_settings(tmp_path, preset, expected):
    overrides = ["experiment=ptb_enas"] + ([f"enas_preset={preset}"] if preset else [])
    cfg = compose_config("train", overrides, tmp_path)
    assert {k: cfg.model[k] for k in expected} == expected
    controller = dict(cfg.model.controller)
    assert controller["tanh_constant"] == (2.25 if preset else 2.5)
    assert controller["hidden"] == (64 if preset else 100) and controller["temperature"] == 5.0
    assert (cfg.dataset.bptt, cfg.dataset.batch_size, cfg.model.grad_clip) == (35, 64, 0.25)
    assert (cfg.model.lr, cfg.model.reward_constant, cfg.search_space.nodes) == (20.0, 80.0, 12)


# -- kill and resume -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("enas-rnn-reference")
    _train_in_process(run, *_smoke(corpus), *COMMON)
    return run


# Shared phase: killed at step 7 (mid-epoch 1; last.ckpt from step 6). Controller phase: killed
# after update 5, inside epoch 1's controller phase (last.ckpt from step 6).
@pytest.mark.slow
@pytest.mark.parametrize(
    "callback, at",
    [("tests.test_resume.KillAt", "step=7"), ("tests.test_enas.KillAtUpdate", "update=5")],
)
def test_killed_in_either_phase_and_resumed_equals_uninterrupted(
    tmp_path, corpus, reference, callback, at
):
    from tests.test_enas import _train_killed

    run = tmp_path / "killed"
    overrides = [*_smoke(corpus), *COMMON]
    proc = _train_killed(run, overrides, callback, at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _last(run)["global_step"] == 6
    _train_in_process(run, *overrides, "resume=true")
    _assert_same_end(reference, run)
    ref, res = _last(reference), _last(run)
    assert torch.equal(ref["bptt_hidden"], res["bptt_hidden"])
    assert torch.equal(ref["controller_generator"], res["controller_generator"])
    assert ref["reinforce"]["baseline"] == res["reinforce"]["baseline"]
    with ResultsStore(reference / "search" / "controller" / "results.sqlite") as a:
        with ResultsStore(run / "search" / "controller" / "results.sqlite") as b:
            assert [r["oneshot_acc"] for r in a.ranking()] == pytest.approx(
                [r["oneshot_acc"] for r in b.ranking()], abs=1e-6
            )


def test_search_py_points_a_recurrent_run_to_its_own_derived_cells(tmp_path):
    from nas.search.checkpoint import load_supernet_module

    path = tmp_path / "last.ckpt"
    module_class = (
        "nas.methods.enas_rnn.ENASRNNModule"  # as checkpoints of earlier versions name it
    )
    torch.save({"state_dict": {}, "hyper_parameters": {}, "module_class": module_class}, path)
    with pytest.raises(NasError, match=r"derives its cells itself .*search/controller"):
        load_supernet_module(str(path), torch.device("cpu"))


def test_language_models_refuse_several_processes_with_one_clear_error():
    from types import SimpleNamespace

    from nas.methods.enas_rnn.lm import LanguageModelModule

    module = LanguageModelModule()
    module.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(NasError, match=r"this run has 2 processes.*trainer.devices=1"):
        module.setup("fit")

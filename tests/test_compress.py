"""BayesNAS structured compression: switches, pruning, the two training phases, ARD updates, runs."""

from __future__ import annotations

import json
import signal

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from nas.data import SyntheticDataModule
from nas.errors import NasError
from nas.methods.bayesnas.compress import BayesCompressionModule
from nas.methods.bayesnas.compress_nets import build_network
from tests.conftest import compose_config

# digits at 16x16 (LeNet-5 needs >= 12 pixels): 16 steps of 32 per epoch, 3 epochs (1 weight-only)
RUN = [
    "experiment=fashion_bayesnas_compress",
    "dataset=digits",
    "dataset.image_size=16",
    "model.image_size=16",
    "dataset.train_subset=512",
    "dataset.batch_size=32",
    "model.hessian_batches=2",
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
]


def _module(**kwargs) -> BayesCompressionModule:
    torch.manual_seed(0)
    settings = {"network": "lenet5", "image_size": 16, "in_channels": 1, **kwargs}
    return BayesCompressionModule(**settings)


def _synthetic(**kwargs) -> SyntheticDataModule:
    settings = {"image_size": 16, "channels": 1, "train_size": 128, "val_size": 64}
    settings.update(test_size=64, batch_size=32, eval_batch_size=64, noise=0.3)
    return SyntheticDataModule(**{**settings, **kwargs})


def _trainer(tmp_path, epochs: int, callbacks=()) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        callbacks=list(callbacks),
    )


@pytest.mark.parametrize("network, channels, size", [("lenet5", 1, 16), ("vgg", 3, 8)])
def test_switch_override_equals_setting_the_switches(network, channels, size):
    module = _module(network=network, in_channels=channels, image_size=size, width=0.25)
    module.eval()  # vgg: batch norm with running statistics, so outputs compare exactly
    x = torch.randn(5, channels, size, size)
    v = torch.rand(module.net.num_switches) * 2
    overridden = module(x, switches=v)
    assert not torch.allclose(overridden, module(x)), "the override must change the output"
    with torch.no_grad():
        module.switches.copy_(v)
    torch.testing.assert_close(module(x), overridden, rtol=0, atol=0)


def _explicit(net, kept: list[int], **kwargs):
    return build_network("lenet5", 10, 1, 16, widths=kept, **kwargs)


def test_zeroed_groups_remove_exactly_those_channels():
    """Pruned LeNet-5 = an explicitly smaller LeNet-5: same function, same parameter count."""
    module = _module()
    net = module.net
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # switches away from 1 as well
    keep = torch.ones(net.num_switches, dtype=torch.bool)
    drop = {0: [1, 4], 1: [0, 3, 7, 8, 15], 2: list(range(0, 120, 3)), 3: list(range(5, 84, 2))}
    for layer, channels in drop.items():
        keep[net.offsets[layer] + torch.tensor(channels)] = False
    module.ard.gamma.copy_(keep.double())  # γ = 0: below any threshold
    assert torch.equal(module.keep_mask(), keep)
    module.prune()
    kept = net.kept_channels(keep)
    assert kept == [6 - 2, 16 - 5, 120 - 40, 84 - 40]

    small = _explicit(net, kept)
    index = [torch.nonzero(piece).flatten() for piece in net.split(keep)]
    with torch.no_grad():
        small.switches.copy_(net.switches[keep])
        inputs = torch.arange(1)  # the image's single channel
        for i, (big, little) in enumerate(zip(net.layers, small.layers, strict=True)):
            weight = big.weight[index[i]]
            if i == 2:  # the first linear layer reads the last conv's channels x 2 x 2 pixels
                spatial = net.flat_size**2
                columns = (inputs[:, None] * spatial + torch.arange(spatial)).flatten()
                weight = weight[:, columns]
            else:
                weight = weight[:, inputs]
            little.weight.copy_(weight)
            little.bias.copy_(big.bias[index[i]])
            inputs = index[i]
        small.classifier.weight.copy_(net.classifier.weight[:, inputs])
        small.classifier.bias.copy_(net.classifier.bias)
    x = torch.randn(7, 1, 16, 16)
    torch.testing.assert_close(small(x), net(x), rtol=1e-5, atol=1e-6)

    explicit = sum(p.numel() for n, p in small.named_parameters() if n != "switches")
    assert net.param_count(kept) == explicit
    assert module.summary()["params_pruned"] == explicit
    assert module.summary()["params_dense"] == net.param_count() == 61706 - 400 * 120 + 64 * 120


@pytest.mark.parametrize("group_size", [2, 5])
def test_pruned_count_with_groups_equals_smaller_network(group_size):
    module = _module(group_size=group_size)
    net = module.net
    assert net.groups == [-(-c // group_size) for c in (6, 16, 120, 84)]
    gamma = torch.ones(net.num_switches, dtype=torch.float64)
    gamma[net.offsets[1]] = 0  # first group of conv2
    gamma[net.offsets[2] + 3 : net.offsets[2] + 9] = 1e-5  # six groups of fc1
    gamma[net.offsets[3] + net.groups[3] - 1] = 0  # the last (ragged) group of fc2
    module.ard.gamma.copy_(gamma)
    module.prune()
    last = 84 - (net.groups[3] - 1) * group_size
    kept = [6, 16 - group_size, 120 - 6 * group_size, 84 - last]
    assert net.kept_channels(module.keep_mask()) == kept
    small = _explicit(net, kept, group_size=group_size)
    explicit = sum(p.numel() for n, p in small.named_parameters() if n != "switches")
    assert module.summary()["params_pruned"] == explicit
    assert int((module.switches == 0).sum()) == 1 + 6 + 1


def test_vgg_count_equals_smaller_network():
    net = build_network("vgg", 10, 3, 32, width=0.25)
    kept = [5, 16, 3, 32, 60, 1, 17]
    small = build_network("vgg", 10, 3, 32, width=0.25, widths=kept)
    assert net.param_count(kept) == sum(
        p.numel() for n, p in small.named_parameters() if n != "switches"
    )
    assert net.param_count() == sum(p.numel() for n, p in net.named_parameters() if n != "switches")


class Record(Callback):
    """Per training step: epoch, whether the switches have a gradient; per epoch: switches, updates."""

    def __init__(self):
        self.grads, self.switches, self.updates = [], [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append((trainer.current_epoch, pl_module.switches.grad is not None))

    def on_train_epoch_end(self, trainer, pl_module):
        self.switches.append(pl_module.switches.detach().clone())
        self.updates.append(int(pl_module.ard.updates))


def test_phase_a_gives_the_switches_no_gradient_and_leaves_them_at_1(tmp_path):
    module, record = _module(warmup_epochs=2, lam=0.05), Record()
    _trainer(tmp_path, 3, [record]).fit(module, datamodule=_synthetic())
    assert record.grads == [(e, e >= 2) for e in range(3) for _ in range(4)]
    for epoch in (0, 1):
        assert torch.equal(record.switches[epoch], torch.ones(module.net.num_switches))
    assert not torch.equal(record.switches[2], torch.ones(module.net.num_switches))
    assert record.updates == [0, 0, 1]


@pytest.mark.parametrize("hessian", ["ggn", "hutchinson"])
def test_ard_updates_once_per_switch_epoch_on_a_planted_task(tmp_path, hessian):
    """Synthetic class prototypes: learnable; after fit γ are finite and (Gauss-Newton) pruning
    keeps the accuracy."""
    module, record = _module(hessian=hessian, lam=0.02, hessian_batches=2), Record()
    data = _synthetic(train_size=512, noise=0.2)
    _trainer(tmp_path, 4, [record]).fit(module, datamodule=data)
    assert record.updates == [0, 1, 2, 3]  # warmup_epochs=1, then one update per epoch
    ard = module.ard
    assert int(ard.updates) == 3
    assert torch.isfinite(ard.gamma).all() and (ard.gamma >= 0).all()
    assert torch.isfinite(ard.omega).all() and torch.isfinite(ard.variance).all()
    assert (ard.hessian >= 0).all() and ard.hessian.max() > 0
    result = json.loads((tmp_path / "compression.json").read_text())
    assert result == module.result
    assert result["ard_updates"] == 3
    assert result["params_pruned"] <= result["params_dense"]
    assert result["val_acc_before"] > 0.5  # the task is learnt
    if hessian == "ggn":  # Hutchinson's noisy estimates (some < 0, i.e. "no evidence") prune more
        assert result["val_acc_after"] >= result["val_acc_before"] - 0.05
    # the pruned groups' switches are zero, the others untouched
    keep = module.keep_mask()
    assert (module.switches[~keep] == 0).all()
    assert torch.equal(module.switches[keep], record.switches[-1][keep])


def test_dead_groups_get_zero_gamma_and_gamma_zero_stays_finite():
    """Zero curvature (a dead unit) would give γ = |s| / 0; the module sets γ = 0 instead, and a
    following step starting from γ = 0 gives a finite ω (so a finite penalty)."""
    module = _module()
    n = module.net.num_switches
    s = torch.full((n,), 0.5)
    h = torch.full((n,), 0.1)
    h[3] = 0.0  # conv1 channel 3: dead
    module.ard_step(s, h)
    assert module.ard.gamma[3] == 0 and not module.keep_mask()[3]
    assert module.keep_mask().sum() == n - 1
    module.ard_step(s, h)
    assert torch.isfinite(module.ard.omega).all()
    assert torch.isfinite(module.ard.penalty(s))


def test_settings_are_validated():
    for kwargs, fragment in [
        ({"network": "resnet"}, "model.network='resnet'"),
        ({"tau": 1.5}, "model.tau=1.5"),
        ({"hessian": "exact"}, "model.hessian='exact'"),
        ({"lam": 0}, "model.lam=0"),
        ({"group_size": 0}, "model.group_size=0"),
        ({"image_size": 8}, "model.image_size=8"),
        ({"warmup_epochs": -1}, "model.warmup_epochs=-1"),
    ]:
        with pytest.raises(NasError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
            _module(**kwargs)


def test_image_size_must_match_the_dataset(tmp_path):
    module = _module(image_size=28)
    with pytest.raises(NasError, match="model.image_size=28 but the dataset's images are 16x16"):
        _trainer(tmp_path, 1).fit(module, datamodule=_synthetic())


@pytest.mark.slow
def test_train_writes_compression_json(tmp_path):
    import train

    train.train(compose_config("train", RUN, tmp_path))
    compression = json.loads((tmp_path / "compression.json").read_text())
    result = json.loads((tmp_path / "result.json").read_text())
    assert (
        compression["params_pruned"] <= compression["params_dense"] == 61706 - 400 * 120 + 64 * 120
    )
    assert compression["ard_updates"] == 2 and compression["epochs"] == 3
    assert len(compression["layers"]) == 4
    assert 0 < compression["kept_fraction"] <= 1
    assert compression["val_acc_before"] > 0.3  # learning (chance: 0.1)
    assert result["kind"] == "BayesCompressionModule"
    # result.json describes the pruned network, as the test that follows fit measures it
    assert result["val_acc"] == pytest.approx(compression["val_acc_after"])
    assert result["test_acc"] == pytest.approx(compression["test_acc_after"])


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    """Killed mid-epoch in phase B (step 43 of 48, after the checkpoint of step 42), resumed: the
    same weights, switches, γ/ω/C/H and compression.json as a run that was never stopped."""
    from tests.test_resume import _last, _train_in_process, _train_killed

    overrides = [*RUN, "callbacks.last.every_n_train_steps=2", "dataset.pad=1"]
    reference, run = tmp_path / "reference", tmp_path / "killed"
    _train_in_process(reference, *overrides)
    proc = _train_killed(run, 43, *overrides)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _last(run)["global_step"] == 42
    _train_in_process(run, *overrides, "resume=true")
    ref, res = _last(reference), _last(run)
    assert res["global_step"] == ref["global_step"] == 48
    assert ref["state_dict"].keys() == res["state_dict"].keys()
    assert "ard.gamma" in ref["state_dict"]
    for name, value in ref["state_dict"].items():
        torch.testing.assert_close(res["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    expected = json.loads((reference / "compression.json").read_text())
    resumed = json.loads((run / "compression.json").read_text())
    assert resumed.pop("layers") == expected.pop("layers")
    assert resumed == pytest.approx(expected)


def test_model_config_lists_every_setting():
    import inspect

    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    cfg = OmegaConf.load(ROOT / "conf" / "model" / "bayes_compress.yaml")
    settings = set(inspect.signature(BayesCompressionModule).parameters)
    assert set(cfg) - {"_target_", "_partial_"} == settings - {"num_classes", "in_channels"}

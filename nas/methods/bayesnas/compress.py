"""BayesNAS's second application (Zhou et al., ICML 2019): structured compression with ARD switches.

Every output channel group of every conv layer and every neuron group of the hidden linear layers is
multiplied by a switch s_g (`compress_nets.py`), with an ARD prior N(0, γ_g) (`nas/methods/bayesnas/ard.py`,
one level: no parents; every switch its own ARD group, so the group lasso is the plain λ ω_g |s_g|
and the search's per-cell switch groups do not enter). Training, per epoch (docs/compress.md):

- epochs < `warmup_epochs` (phase A): cross-entropy, weights only; the switches stay at 1 and get
  no gradient;
- later epochs (phase B): cross-entropy + Σ_g λ ω_g |s_g| (`HierarchicalARD.penalty`); SGD on the
  weights (with weight decay) and on the switches (without); after the epoch's last step, before
  validation and the epoch's checkpoint, the diagonal Hessian of the data loss w.r.t. the switches
  on `hessian_batches` fixed, un-augmented training batches (Gauss-Newton or Hutchinson) feeds one
  Laplace step `HierarchicalARD.update` (new C, ω, γ).

After fit, groups with γ_g < tau · max γ (the max over the group's own layer, or over the whole
network with `threshold_scope=global`) are pruned: their switches are set to 0, so the test that
follows measures the pruned network. `<run dir>/compression.json` records the dense and pruned
parameter counts, the kept fraction per layer and the validation/test accuracy before and after.
All state (weights, switches, γ/ω/C/H) lives in the module or the optimizer: a resumed run continues
exactly.

Longer than 300 lines: one LightningModule whose two training phases, ARD step and pruning read
and write the same state (switches, γ, the keep mask); the networks it switches are in
`compress_nets.py` and the ARD algebra in `ard.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas import distributed
from nas.atomic import write_text
from nas.checkpointing import check_finite_loss
from nas.data.base import in_memory_split
from nas.errors import check
from nas.methods.bayesnas.ard import HierarchicalARD, ggn_diagonal, hutchinson_diagonal
from nas.methods.bayesnas.compress_nets import NETWORKS, build_network
from nas.modules.base import ClassifierModule
from nas.modules.optim import LR_SCHEDULES, sgd_with_schedule

HESSIANS = ("ggn", "hutchinson")
SCOPES = ("layer", "global")
COMPRESSION = "compression.json"
# Gauss-Newton: examples per `ggn_diagonal` call. It differentiates every logit of the call's batch
# separately (N·K backward rows over N examples), so small calls are cheapest; 4 amortises the
# Python overhead (measured on LeNet-5, CPU).
GGN_EXAMPLES = 4
# Before an ARD step γ is raised to at least this: the step computes ω² as 1/γ - C/γ², which for
# γ -> 0 cancels catastrophically (γ = 0 gives ω = inf and an infinite penalty next epoch).
GAMMA_MIN = 1e-8


class BayesCompressionModule(ClassifierModule):
    """A switched LeNet-5 or VGG-style network trained and pruned with BayesNAS's ARD switches.

    Args:
        network: `lenet5` (conv5x5 6 → pool → conv5x5 16 → pool → fc 120 → fc 84) or `vgg`
            (conv3x3-BN-ReLU [64, 64, M, 128, 128, M, 256, 256, M] → fc 256), then a classifier.
        image_size: side of the input images (sets the flattened size); must match the dataset.
        width: multiplier of every layer's channel count.
        group_size: channels (neurons) per switch; a layer's last group may be smaller.
        lr, momentum, weight_decay, lr_schedule: SGD of the weights (decay on conv/linear weights).
        switch_lr: SGD learning rate of the switches (same momentum and schedule, no weight decay).
        lam: λ of the re-weighted lasso λ Σ ω_g |s_g| (also scales the Hessian: Ĥ = H / λ).
        tau: relative prune threshold: a group is kept while γ_g >= tau · max γ.
        threshold_scope: `layer` (max over the group's layer: every layer keeps >= 1 group) or
            `global` (max over all switches).
        hessian: `ggn` (Gauss-Newton diagonal, never negative) or `hutchinson` (Rademacher probes).
        hessian_batches: training batches (of dataset.batch_size, the first of the training split,
            un-augmented) the Hessian is averaged over.
        hessian_probes: probes per batch for `hutchinson`.
        hessian_seed: seed of the Hutchinson probes (drawn afresh from (seed, epoch) every update).
        warmup_epochs: phase-A epochs (weights only) before the switches train.
        prune_at_end: zero the switches of the pruned groups after fit (false: only report them).
    """

    inputs = frozenset()  # its network comes from model.network, not from a search space

    def __init__(
        self,
        network: str = "lenet5",
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        width: float = 1.0,
        group_size: int = 1,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        lr_schedule: str = "constant",
        switch_lr: float = 0.05,
        lam: float = 0.01,
        tau: float = 1e-2,
        threshold_scope: str = "layer",
        hessian: str = "ggn",
        hessian_batches: int = 4,
        hessian_probes: int = 16,
        hessian_seed: int = 0,
        min_curvature: float = 1e-3,
        warmup_epochs: int = 1,
        prune_at_end: bool = True,
    ):
        super().__init__()
        check(
            network in NETWORKS,
            f"model.network={network!r} is unknown; choose one of {list(NETWORKS)}",
        )
        check(
            isinstance(image_size, int) and image_size >= 1,
            f"model.image_size={image_size!r} must be a positive integer (the dataset's image side)",
        )
        check(
            isinstance(lr, int | float) and lr > 0,
            f"model.lr={lr!r} must be > 0 (the code uses 0.1)",
        )
        check(
            0 <= momentum < 1,
            f"model.momentum={momentum!r} must lie in [0, 1) (the code uses 0.9)",
        )
        check(
            weight_decay >= 0,
            f"model.weight_decay={weight_decay!r} must be >= 0 (the code uses 1e-4)",
        )
        check(
            lr_schedule in LR_SCHEDULES,
            f"model.lr_schedule={lr_schedule!r} is unknown; choose one of {list(LR_SCHEDULES)}",
        )
        check(
            isinstance(switch_lr, int | float) and switch_lr > 0,
            f"model.switch_lr={switch_lr!r} must be > 0 (the code uses 0.1)",
        )
        check(
            isinstance(lam, int | float) and lam > 0,
            f"model.lam={lam!r} must be > 0 (the paper's lambdas: 0.005, 0.007, 0.01)",
        )
        check(
            isinstance(tau, int | float) and 0 < tau < 1,
            f"model.tau={tau!r} must lie in (0, 1) (relative prune threshold; e.g. 1e-2)",
        )
        check(
            threshold_scope in SCOPES,
            f"model.threshold_scope={threshold_scope!r} is unknown; choose one of {list(SCOPES)}",
        )
        check(
            isinstance(min_curvature, int | float) and 0 <= min_curvature < 1,
            f"model.min_curvature={min_curvature!r} must lie in [0, 1) (relative to the layer's "
            "largest switch Hessian; 0: only groups with zero curvature count as dead)",
        )
        check(
            hessian in HESSIANS,
            f"model.hessian={hessian!r} is unknown; choose one of {list(HESSIANS)}",
        )
        for key, value, low in (
            ("hessian_batches", hessian_batches, 1),
            ("hessian_probes", hessian_probes, 1),
            ("hessian_seed", hessian_seed, 0),
            ("warmup_epochs", warmup_epochs, 0),
        ):
            check(
                isinstance(value, int) and not isinstance(value, bool) and value >= low,
                f"model.{key}={value!r} must be an integer >= {low}",
            )
        check(
            isinstance(prune_at_end, bool),
            f"model.prune_at_end={prune_at_end!r} must be true or false",
        )
        self.save_hyperparameters()
        self.net = build_network(
            network, num_classes, in_channels, image_size, width=width, group_size=group_size
        )
        n = self.net.num_switches
        # float64: the step's ω² = 1/γ - C/γ² loses every digit in float32 once γ·Ĥ < ~1e-6
        self.ard = HierarchicalARD([float(lam)] * n, [-1] * n).double()
        self.num_params = self.net.param_count()
        self.result: dict | None = None  # compression.json's contents, after fit
        self._init_metrics(num_classes)

    @property
    def switches(self) -> torch.nn.Parameter:
        """All switches, one per channel group, in one flat vector (unit by unit)."""
        return self.net.switches

    def forward(self, x: torch.Tensor, switches: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, switches)

    def phase_b(self) -> bool:
        """Whether this epoch trains the switches (after `warmup_epochs` weight-only epochs)."""
        return self.current_epoch >= self.hparams.warmup_epochs

    # -- training -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self._trainer, "datamodule", None)
        size = getattr(dm, "image_size", None)
        check(
            size is None or size == self.hparams.image_size,
            f"model.image_size={self.hparams.image_size} but the dataset's images are {size}x{size}; "
            f"set model.image_size={size}",
        )

    def on_fit_start(self) -> None:
        if self.logger is not None:
            self.logger.log_metrics({"model/params": float(self.num_params)}, step=0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        train_switches = self.phase_b()
        # phase A: the switches are constants (no gradient, so SGD leaves them at 1)
        logits = self(x, self.switches if train_switches else self.switches.detach())
        loss = F.cross_entropy(logits, y)
        self.log("train/ce", loss)
        if train_switches:
            loss = loss + self.ard.penalty(self.switches)
        check_finite_loss(self, loss)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # the epoch's pass is complete: update the prior before validation and the checkpoint
        if self.phase_b() and batch_idx + 1 == self.trainer.num_training_batches:
            self.update_prior()

    def update_prior(self) -> torch.Tensor:
        """One ARD step from the Hessian on the fixed batches; logs the kept fraction; returns H."""
        # DDP: every process computes the same estimate; the mean rules out any drift between them
        hessian = distributed.mean(self, self.switch_hessian())
        self.ard_step(self.switches.detach(), hessian)
        check(
            bool(torch.isfinite(self.ard.gamma).all()),
            f"ARD update {int(self.ard.updates)} gave non-finite prior variances γ; lower "
            f"model.switch_lr={self.hparams.switch_lr} or raise model.lam={self.hparams.lam}",
        )
        keep = self.keep_mask()
        kept = self.net.kept_channels(keep)
        for key, value in (
            ("compress/kept_fraction", keep.float().mean()),
            ("compress/params_kept", float(self.net.param_count(kept))),
            ("compress/gamma_mean", self.ard.gamma.mean()),
            ("compress/hessian_mean", hessian.mean()),
            ("compress/switch_abs_mean", self.switches.detach().abs().mean()),
        ):
            self.log(key, value, on_step=False, on_epoch=True, prog_bar=key.endswith("fraction"))
        return hessian

    @torch.no_grad()
    def ard_step(self, switches: torch.Tensor, hessian: torch.Tensor) -> None:
        """`HierarchicalARD.update` with guards (docs/compress.md; the ARD state is float64):

        - γ is raised to GAMMA_MIN first (the step divides by γ²);
        - a group without evidence (zero curvature: its channels never change the logits on the
          Hessian batches, a dead ReLU unit or one nothing downstream reads; or curvature below
          `min_curvature` times the largest of its layer) would get ω ≈ 0 and γ ≈ |s| / 0, the
          largest γ of its layer; its γ is set to 0 instead: irrelevant, as sparse Bayesian
          learning prunes a basis function that explains nothing.
        """
        self.ard.gamma.clamp_(min=GAMMA_MIN)
        self.ard.update(switches, hessian)
        self.ard.gamma.masked_fill_(~self.evidence(hessian).to(self.ard.gamma.device), 0.0)

    def evidence(self, hessian: torch.Tensor) -> torch.Tensor:
        """True for the groups whose curvature is at least `min_curvature` times the largest of
        their layer (or of the network, with threshold_scope=global), and above 0."""
        h, rel = hessian.clamp_min(0), self.hparams.min_curvature
        if self.hparams.threshold_scope == "global":
            return h > rel * h.max()
        return torch.cat([(g > 0) & (g >= rel * g.max()) for g in self.net.split(h)])

    def hessian_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `hessian_batches` batches of the training split: normalised, un-augmented."""
        dm = self.trainer.datamodule
        split = in_memory_split(dm, "train", "the switch Hessian")
        count = min(len(split), self.hparams.hessian_batches * dm.batch_size)
        images = dm.normalize(split.images[:count].to(self.device))
        return images, split.labels[:count].to(self.device)

    def switch_hessian(self) -> torch.Tensor:
        """Diagonal Hessian of the mean cross-entropy w.r.t. the switches, averaged over the fixed
        batches; batch norm uses its running statistics (examples independent of each other)."""
        h = self.hparams
        images, labels = self.hessian_data()
        was_training = self.net.training
        self.net.eval()
        s = self.switches.detach()
        total = torch.zeros_like(s)
        try:
            with torch.enable_grad():
                if h.hessian == "ggn":
                    for start in range(0, len(labels), GGN_EXAMPLES):
                        x = images[start : start + GGN_EXAMPLES]
                        total += ggn_diagonal(lambda v, x=x: self.net(x, v), s) * len(x)
                else:
                    seed = np.random.SeedSequence([h.hessian_seed, self.current_epoch])
                    generator = torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
                    batch = self.trainer.datamodule.batch_size
                    for start in range(0, len(labels), batch):
                        x, y = images[start : start + batch], labels[start : start + batch]
                        total += hutchinson_diagonal(
                            lambda v, x=x, y=y: F.cross_entropy(self.net(x, v), y),
                            s,
                            h.hessian_probes,
                            generator,
                        ) * len(x)
        finally:
            self.net.train(was_training)
        return total / len(labels)

    # -- pruning ------------------------------------------------------------------------------
    def keep_mask(self) -> torch.Tensor:
        """True for every group with γ >= tau · max γ (per layer or global); all True before the
        first ARD update (γ = 1)."""
        gamma = self.ard.gamma
        if self.hparams.threshold_scope == "global":
            return gamma >= self.hparams.tau * gamma.max()
        return torch.cat([g >= self.hparams.tau * g.max() for g in self.net.split(gamma)])

    def summary(self) -> dict:
        """Dense and pruned parameter counts and the kept fraction per layer, for the current γ."""
        keep = self.keep_mask()
        kept = self.net.kept_channels(keep)
        layers = []
        for i, (unit, channels) in enumerate(zip(self.net.units, kept, strict=True)):
            groups = self.net.layer_switches(keep, i)
            layers.append(
                {
                    "layer": i,
                    "kind": unit.kind,
                    "channels": unit.out,
                    "channels_kept": channels,
                    "groups": int(groups.numel()),
                    "groups_kept": int(groups.sum()),
                    "kept_fraction": channels / unit.out,
                }
            )
        dense, pruned = self.net.param_count(), self.net.param_count(kept)
        return {
            "network": self.hparams.network,
            "params_dense": dense,
            "params_pruned": pruned,
            "params_kept_fraction": pruned / dense,
            "groups": int(keep.numel()),
            "groups_kept": int(keep.sum()),
            "kept_fraction": float(keep.float().mean()),
            "ard_updates": int(self.ard.updates),
            "layers": layers,
        }

    @torch.no_grad()
    def prune(self) -> torch.Tensor:
        """Zero the switches of the groups below the threshold; returns the keep mask."""
        keep = self.keep_mask()
        self.switches.masked_fill_(~keep, 0.0)
        return keep

    @torch.no_grad()
    def evaluate(self, split_name: str) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) on the datamodule's `split_name` split, eval mode."""
        dm = self.trainer.datamodule
        split = getattr(dm, f"{split_name}_split", None)
        check(
            split is not None and hasattr(dm, "normalize"),
            f"{type(dm).__name__} has no in-memory {split_name} split to measure the pruning on",
        )
        was_training = self.training
        self.eval()
        correct, loss = 0, 0.0
        try:
            for start in range(0, len(split), dm.eval_batch_size):
                x = dm.normalize(split.images[start : start + dm.eval_batch_size].to(self.device))
                y = split.labels[start : start + dm.eval_batch_size].to(self.device)
                with self.trainer.strategy.precision_plugin.forward_context():
                    logits = self(x).float()
                correct += int((logits.argmax(1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
        finally:
            self.train(was_training)
        return correct / max(1, len(split)), loss / max(1, len(split))

    def on_fit_end(self) -> None:
        """Measure, prune, measure again; write `<run dir>/compression.json`. Afterwards the
        trainer's `val/acc` and `val/loss` (result.json) and the test describe the pruned net."""
        before = {name: self.evaluate(name) for name in ("val", "test")}
        result = self.summary()
        pruned = self.hparams.prune_at_end
        if pruned:
            self.prune()
        after = {name: self.evaluate(name) for name in ("val", "test")} if pruned else before
        result.update(
            pruned=pruned,
            epochs=self.current_epoch,
            **{f"{n}_acc_before": before[n][0] for n in before},
            **{f"{n}_acc_after": after[n][0] for n in after},
            **{f"{n}_loss_before": before[n][1] for n in before},
            **{f"{n}_loss_after": after[n][1] for n in after},
            acc_before=before["val"][0],
            acc_after=after["val"][0],
        )
        self.result = result
        metrics = self.trainer.callback_metrics
        metrics["val/acc"] = torch.tensor(after["val"][0])
        metrics["val/loss"] = torch.tensor(after["val"][1])
        if self.trainer.is_global_zero and self.trainer.default_root_dir:
            path = Path(self.trainer.default_root_dir) / COMPRESSION
            write_text(path, json.dumps(result, indent=2) + "\n")

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        if self.result is not None:
            self.log("test/params_pruned", float(self.result["params_pruned"]))

    # -- optimiser ----------------------------------------------------------------------------
    def configure_optimizers(self):
        """One SGD: conv/linear weights (decayed), BN and biases, and the switches (own LR)."""
        h = self.hparams
        weights = [p for n, p in self.net.named_parameters() if n != "switches"]
        groups = [
            {"params": [p for p in weights if p.dim() > 1], "weight_decay": h.weight_decay},
            {"params": [p for p in weights if p.dim() <= 1], "weight_decay": 0.0},
            {"params": [self.switches], "weight_decay": 0.0, "lr": h.switch_lr},
        ]
        return sgd_with_schedule(
            groups,
            h.lr,
            h.momentum,
            False,
            h.lr_schedule,
            0,
            int(self.trainer.estimated_stepping_batches),
        )

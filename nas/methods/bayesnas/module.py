"""BayesNAS (Zhou et al., ICML 2019): hierarchical ARD priors on path switches, pruned by relevance.

Every option of every decision has a switch (its path weight); a decision that may choose nothing
(an edge: `min_k = 0`) also has an edge switch, the parent of its op switches, so the path weight
of op k on edge e is s_e · s_k (`nas.methods.bayesnas.switches`). `switch_form="per_cell"` (the
authors' code): every cell has its own switches, and the copies of a path's switch across the cells
of a type form one group of the lasso and of the prior; `"tied"`: one switch per path shared by all
cells (every run written before the option). Every epoch (one round):
- phase A, the first `weights_fraction` of the epoch's batches: the weights train, switches frozen
  (at 1 in the first round);
- phase B, the rest: weights and switches train on cross-entropy + Σ_g λ·ω_g·‖s_g‖₂
  (`nas.methods.bayesnas.ard`);
- then, before the epoch's checkpoint, one Laplace update of the priors (C, ω, γ, hierarchy) from the
  switch Hessian's diagonal on `hessian_batches` fixed training batches.
After the last round, paths whose group's γ falls below `tau · max γ` are pruned; the pruned
architecture (valid for the space, dead nodes removed) is written like any search result:
`<run>/search/bayesnas/` with results.sqlite, ranking.csv, selections, derived_arch.json, plus
gamma.csv and gamma.png.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from nas import distributed
from nas.atomic import write_text
from nas.checkpointing import check_finite_loss
from nas.data.base import in_memory_split
from nas.errors import check
from nas.methods.bayesnas.ard import HierarchicalARD, ggn_diagonal, hutchinson_diagonal
from nas.methods.bayesnas.figures import plot_gamma
from nas.methods.bayesnas.switches import SWITCH_FORMS, Switches, SwitchSampler
from nas.modules.supernet import OneShotModule, validation_accuracy
from nas.results.derived import write_derived
from nas.spaces import Architecture, SearchSpace, build_space

HESSIANS = ("ggn", "hutchinson")
__all__ = ["BayesNASModule", "Switches", "SwitchSampler"]


class BayesNASModule(OneShotModule):
    """The supernet of `space` with ARD switches on its paths (see the module docstring)."""

    method = "bayesnas"
    derives = "bayesnas"  # the pruned architecture, at the end of training
    inputs = frozenset({"space"})  # the switches decide the path weights: no sampler
    supernet_defaults = {"ghost_size": 18, "nesterov": False}  # the authors' batch of 18
    fixed_settings = {"lr_schedule": "constant", "warmup_steps": 0}

    def __init__(
        self,
        space: SearchSpace | Mapping,
        lam: float = 0.01,
        lam_edge: float | None = None,
        weights_fraction: float = 0.1,
        switch_lr: float = 0.1,
        tau: float = 1e-2,
        hessian: str = "ggn",
        hessian_batches: int = 4,
        hessian_examples: int | None = None,
        hutchinson_probes: int = 16,
        switch_form: str = "per_cell",
        **kwargs,
    ):
        """kwargs: the supernet's settings (`OneShotModule`; BayesNAS's in `supernet_defaults`)."""
        settings = self.supernet_settings(kwargs)
        space = build_space(space)
        check(
            switch_form in SWITCH_FORMS,
            f"model.switch_form={switch_form!r} must be one of {list(SWITCH_FORMS)} ("
            + "; ".join(f"{k}: {v}" for k, v in SWITCH_FORMS.items())
            + ")",
        )
        check(lam > 0, f"model.lam={lam!r} must be > 0 (the paper's lambda: 0.005, 0.007, 0.01)")
        check(
            lam_edge is None or lam_edge > 0,
            f"model.lam_edge={lam_edge!r} must be null (= lam) or > 0",
        )
        check(
            0 <= weights_fraction < 1,
            f"model.weights_fraction={weights_fraction!r} must lie in [0, 1) (the code's 10%)",
        )
        check(switch_lr > 0, f"model.switch_lr={switch_lr!r} must be > 0 (the code: 0.1)")
        check(0 < tau < 1, f"model.tau={tau!r} must lie in (0, 1): prune below tau * max gamma")
        check(hessian in HESSIANS, f"model.hessian={hessian!r} must be one of {list(HESSIANS)}")
        check(
            hessian_examples is None
            or (isinstance(hessian_examples, int) and hessian_examples >= 1),
            f"model.hessian_examples={hessian_examples!r} must be null (the whole batch) or an "
            "integer >= 1",
        )
        for key, value in (
            ("hessian_batches", hessian_batches),
            ("hutchinson_probes", hutchinson_probes),
        ):
            check(
                isinstance(value, int) and value >= 1,
                f"model.{key}={value!r} must be an integer >= 1",
            )
        sampler = SwitchSampler()
        super().__init__(space, sampler, **settings)
        self.switch_form = switch_form
        if switch_form == "tied":
            # the form of every run written before the option, whose settings lack it: a tied
            # run's settings lack it too, so either resumes with the other (`restore_arguments`)
            self.hparams.pop("switch_form", None)
        copies = self.supernet.cells_per_decision() if switch_form == "per_cell" else None
        self.switches = sampler.switches = Switches(space, copies)
        keys = self.switches.keys
        lambdas = [(lam_edge or lam) if option is None else lam for _, option in keys]
        self.ard = HierarchicalARD(lambdas, self.switches.parents, self.switches.groups.tolist())

    # -- training -----------------------------------------------------------------------------
    def phase(self, batch_idx: int) -> str:
        """ "weights" (A: switches frozen) for the epoch's first batches, then "switches" (B)."""
        total = self.trainer.num_training_batches if self._trainer is not None else 1
        return "weights" if batch_idx < round(self.hparams.weights_fraction * total) else "switches"

    def training_step(self, batch, batch_idx):
        x, y = batch
        train_switches = self.phase(batch_idx) == "switches"
        values = self.switches.values if train_switches else self.switches.values.detach()
        weights = self.switches.weights(values)
        logits = self.supernet(x, weights, self.hparams.ghost_size)
        ce = F.cross_entropy(logits, y)
        l2 = self.supernet.l2_penalty(weights) if self.hparams.l2 else torch.zeros(())
        loss = ce + 0.5 * self.hparams.l2 * l2
        if train_switches:
            lasso = self.ard.penalty(self.switches.values)
            loss = loss + lasso
            self.log("bayesnas/lasso", lasso)
        check_finite_loss(self, loss)
        self.train_acc(logits, y)
        self.log("train/loss", ce, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # the round's training is done
            self.update_priors()

    def update_priors(self) -> None:
        """One Laplace update of γ, ω, C from the switch Hessian on fixed training batches."""
        h = self.hparams
        was_training = self.supernet.training
        self.supernet.eval()  # ghost BN: batch statistics either way
        total = torch.zeros_like(self.switches.values)
        batches = _fixed_batches(self.trainer.datamodule, h.hessian_batches, self.device)
        generator = torch.Generator().manual_seed(int(self.ard.updates))
        n = h.hessian_examples or batches[0][0].shape[0]
        ghost = min(h.ghost_size, n)
        for x, y in ((x[:n], y[:n]) for x, y in batches):

            def logits_of(s, x=x):
                return self.supernet(x, self.switches.weights(s), ghost)

            if h.hessian == "ggn":
                total += ggn_diagonal(logits_of, self.switches.values)
            else:
                total += hutchinson_diagonal(
                    lambda s, x=x, y=y: F.cross_entropy(logits_of(s, x), y),
                    self.switches.values,
                    h.hutchinson_probes,
                    generator,
                )
        self.supernet.train(was_training)
        # DDP: every process computes the same estimate; the mean rules out any drift between them
        total = distributed.mean(self, total)
        self.ard.update(self.switches.values, total / len(batches))
        gamma = self.ard.gamma
        kept = (gamma >= h.tau * gamma.max()).float().mean()
        self.log("bayesnas/gamma_mean", gamma.mean(), on_step=False, on_epoch=True)
        self.log("bayesnas/kept_fraction", kept, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        """SGD on the weights (decay: the masked L2 term) and on the switches (no decay)."""
        h = self.hparams
        return torch.optim.SGD(
            [
                {"params": list(self.supernet.parameters())},
                {"params": [self.switches.values], "lr": h.switch_lr},
            ],
            lr=h.lr,
            momentum=h.momentum,
            nesterov=h.nesterov and h.momentum > 0,
        )

    @classmethod
    def restore_arguments(cls, hparams) -> dict:
        # settings without a switch form: written tied (before the option, or tied since)
        return {"switch_form": "tied", **super().restore_arguments(hparams)}

    # -- pruning --------------------------------------------------------------------------------
    def relevance(self) -> dict[tuple[str, str | None], float]:
        """Effective γ (after the hierarchy) of every switch group, by (decision, option or None)."""
        return dict(zip(self.switches.keys, self.ard.gamma.tolist(), strict=True))

    def pruned(self, tau: float | None = None) -> Architecture:
        """The architecture of the paths whose γ is at least `tau` · the largest γ of their kind
        (edges, ops), kept within each decision's min_k..max_k by γ, dead parts removed."""
        tau = self.hparams.tau if tau is None else tau
        gamma = self.relevance()
        ops = [g for (_, option), g in gamma.items() if option is not None]
        edges = [g for (_, option), g in gamma.items() if option is None]
        op_bar = tau * max(ops)
        edge_bar = tau * max(edges) if edges else 0.0
        choices = {}
        for d in self.space.decisions:
            ranked = sorted(d.options, key=lambda o: -gamma[(d.name, o)])
            kept = [o for o in ranked if gamma[(d.name, o)] >= op_bar]
            if d.name in self.switches.edge_index and gamma[(d.name, None)] < edge_bar:
                kept = []  # the edge is irrelevant: its ops go with it
            kept = (kept + [o for o in ranked if o not in kept])[: max(len(kept), d.min_k)]
            choices[d.name] = kept[: d.max_k]
        return self.space.simplify(self.space.architecture(choices))

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero and self.ard.updates > 0:
            write_bayesnas_outputs(
                self, Path(self.trainer.default_root_dir) / "search" / self.derives
            )


def _fixed_batches(datamodule, count: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` fixed, un-augmented training batches (the first of the training split)."""
    split = in_memory_split(datamodule, "train", "BayesNAS's switch Hessian")
    size = datamodule.batch_size
    count = max(1, min(count, len(split) // size))
    return [
        (
            datamodule.normalize(split.images[i * size : (i + 1) * size].to(device)),
            split.labels[i * size : (i + 1) * size].to(device),
        )
        for i in range(count)
    ]


def write_bayesnas_outputs(module: BayesNASModule, out: Path) -> dict:
    """The pruned architecture as a search result (store, ranking, selections), and γ per path."""

    arch = module.pruned()
    with torch.no_grad():  # scored with the trained switch weights, restricted to its paths
        keep = module.space.encode([arch])
        weights = {n: w * keep[n].to(w) for n, w in module.switches.weights().items()}
    summary = write_derived(module, arch, out, validation_accuracy(module, weights))
    table = io.StringIO()
    writer = csv.writer(table)
    # one row per switch (per cell copy); γ, ω are its group's, H its own
    writer.writerow(["decision", "option", "kind", "switch", "gamma", "omega", "hessian", "copy"])
    switches, ard = module.switches, module.ard
    state = zip(
        switches.groups.tolist(),
        switches.copy_index.tolist(),
        switches.values.tolist(),
        ard.hessian.tolist(),
        strict=True,
    )
    gamma, omega = ard.gamma.tolist(), ard.omega.tolist()
    for group, copy, s, hess in state:
        decision, option = switches.keys[group]
        kind = "edge" if option is None else "op"
        row = [decision, option or "", kind, f"{s:.6g}", f"{gamma[group]:.6g}"]
        writer.writerow([*row, f"{omega[group]:.6g}", f"{hess:.6g}", copy])
    write_text(out / "gamma.csv", table.getvalue())
    plot_gamma(module.relevance(), module.hparams.tau, out / "gamma.png")
    return summary

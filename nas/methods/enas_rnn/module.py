"""ENAS's recurrent cell search (Pham et al., ICML 2018): controller and shared weights on a language model.

The alternation of `nas.methods.enas.module` on the `enas_rnn` space, with a language model's data:
1. shared weights: one pass over the training stream in BPTT batches of 35 steps, each batch
   training the cell the controller samples (M = 1), the hidden state carried from batch to batch
   (`nas.methods.enas_rnn.lm`); SGD lr 20 decayed per epoch, gradient-norm clipping 0.25, masked L2;
2. controller: `controller_steps` REINFORCE updates of `controller_aggregate` samples each, the
   reward of a sample c / perplexity (c = 80) on its own random window of the validation stream.
Validation and test report the perplexity of `val_archs` cells sampled with fixed seeds (the
geometric mean of their perplexities). After the last epoch ENAS's derive step runs: `derive_archs`
distinct samples of the trained controller, each scored on the whole validation stream, written to
`<run>/search/controller/` as a search writes its results (`results.sqlite`, `ranking.csv`,
`selections/`), score = c / validation perplexity (higher is better).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.atomic import write_text
from nas.errors import NasError, check
from nas.methods.enas.controller import Controller
from nas.methods.enas.module import plain_settings, write_greedy
from nas.methods.enas.reinforce import Reinforce
from nas.methods.enas.strategy import ControllerStrategy
from nas.methods.enas_rnn.lm import LanguageModelModule, check_lm_optimizer
from nas.modules.method import MethodModule
from nas.results.outputs import write_outputs
from nas.results.store import ResultsStore
from nas.search.driver import replay_or_evaluate
from nas.spaces import Architecture, SearchSpace, build_space
from nas.spaces.enas_rnn import EnasRnnSpace, lm_size


class ENASRNNModule(MethodModule, LanguageModelModule):
    """The recurrent supernet of `space` and its controller, trained in ENAS's alternation."""

    method = "enas_rnn"
    derives = "controller"  # ENAS's derive step, after the last epoch
    learned_outside_trainer = ("controller.",)  # REINFORCE's own Adam

    @classmethod
    def check_searchable(cls, checkpoint, path) -> None:
        raise NasError(
            f"checkpoint {str(path)!r} is an ENAS recurrent (language-model) run: it derives its "
            f"cells itself at the end of training, into <run>/search/{cls.derives}/ (ranking.csv, "
            "selections); retrain one with experiment=quickstart_enas_rnn_standalone "
            "arch=<selection json>"
        )

    def __init__(
        self,
        space: SearchSpace | Mapping,
        controller: Mapping | None = None,
        controller_lr: float = 3.5e-4,
        controller_steps: int = 2000,
        controller_aggregate: int = 1,
        baseline_decay: float = 0.99,
        entropy_weight: float = 1e-4,
        reward_constant: float = 80.0,
        reward_batch_size: int = 64,
        controller_seed: int = 0,
        val_archs: int = 4,
        derive_archs: int = 100,
        derive_batch: int = 10,
        num_classes: int = 10000,
        in_channels: int = 1,
        hidden: int = 1000,
        dropout: float = 0.4,
        dropout_hidden: float = 0.25,
        dropout_input: float = 0.65,
        dropout_embed: float = 0.1,
        max_hidden_norm: float | None = 25.0,
        lr: float = 20.0,
        lr_decay: float = 0.96,
        decay_after: int = 15,
        l2: float = 1e-7,
        grad_clip: float | None = 0.25,
        mask_seed: int = 0,
    ):
        super().__init__()
        space = build_space(space)
        check(
            isinstance(space, EnasRnnSpace),
            f"model=enas_rnn searches recurrent cells: use search_space=enas_rnn, not "
            f"{space.name!r}",
        )
        for key, value, low in (
            ("controller_steps", controller_steps, 0),
            ("controller_aggregate", controller_aggregate, 1),
            ("reward_batch_size", reward_batch_size, 1),
            ("val_archs", val_archs, 1),
            ("derive_archs", derive_archs, 0),
            ("derive_batch", derive_batch, 1),
        ):
            check(
                isinstance(value, int) and value >= low,
                f"model.{key}={value!r} must be an integer >= {low}",
            )
        check(reward_constant > 0, f"model.reward_constant={reward_constant!r} must be > 0 (80)")
        check_lm_optimizer(lr, lr_decay, decay_after, l2, grad_clip)
        controller = plain_settings(controller or {})
        self.save_hyperparameters(ignore=["space", "controller"])
        self.hparams["space"] = space.spec()  # plain values: the checkpoint rebuilds the space
        self.hparams["controller"] = controller
        self.space = space
        self.supernet = space.build_supernet(
            num_classes=num_classes,
            in_channels=in_channels,
            hidden=hidden,
            dropout=dropout,
            dropout_hidden=dropout_hidden,
            dropout_input=dropout_input,
            dropout_embed=dropout_embed,
            max_hidden_norm=max_hidden_norm,
        )
        # its initial weights and its sampling draw from two streams of controller_seed
        init_seed = int(np.random.SeedSequence([controller_seed, 1]).generate_state(1)[0])
        self.controller = Controller(space, **{"seed": init_seed, **controller})
        self.reinforce = Reinforce(
            self.controller, controller_lr, baseline_decay, entropy_weight, skip_weight=0.0
        )
        self.mask_generator = torch.Generator().manual_seed(mask_seed)  # the trained cells
        self.controller_generator = torch.Generator().manual_seed(controller_seed)
        self._eval_weights: dict[str, torch.Tensor] | None = None
        self._init_lm(num_classes)

    # -- phase 1: shared weights ---------------------------------------------------------------
    def train_run(self, x, hidden):
        """The batch through the cell the controller samples now, from the carried state."""
        arch = self.controller.sample(1, self.mask_generator)[0]
        weights = self.space.encode([arch])
        logits, hidden = self.supernet.run(x, hidden, weights)
        l2 = self.hparams.l2
        extra = 0.5 * l2 * self.supernet.l2_penalty(weights).to(logits.dtype) if l2 else 0.0
        return logits, hidden, extra

    def on_validation_epoch_start(self) -> None:
        self._eval_weights = self._fixed_samples()

    def on_test_epoch_start(self) -> None:
        self._eval_weights = self._fixed_samples()

    def _fixed_samples(self) -> dict[str, torch.Tensor]:
        """`val_archs` cells drawn with seed 0: the policy's typical cells, the same every epoch."""
        archs = self.controller.sample(self.hparams.val_archs, torch.Generator().manual_seed(0))
        return self.space.encode(archs)

    def eval_run(self, x, hidden):
        """The batch through each fixed sample, one group of rows per cell."""
        k = self.hparams.val_archs
        return self.supernet.run(x.repeat(k, 1), hidden, self._eval_weights, x.shape[0])

    # -- phase 2: the controller ---------------------------------------------------------------
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's pass is complete
            self.train_controller()

    def train_controller(self) -> dict[str, float]:
        """`controller_steps` REINFORCE updates on c / validation perplexity; logs the means
        (`controller/ppl`: the geometric mean of the samples' window perplexities)."""
        h = self.hparams
        if not h.controller_steps:
            return {}
        stream = self.trainer.datamodule.stream("val", h.reward_batch_size)
        bptt = self.trainer.datamodule.bptt
        check(
            stream.shape[1] > bptt,
            f"model.reward_batch_size={h.reward_batch_size} cuts the validation split into "
            f"streams of {stream.shape[1]} tokens, shorter than a window of dataset.bptt={bptt} "
            "steps; lower reward_batch_size",
        )
        was_training = self.supernet.training
        self.supernet.eval()  # rewards without dropout
        totals: dict[str, float] = {}
        for _ in range(h.controller_steps):
            archs = self.controller.sample(h.controller_aggregate, self.controller_generator)
            ppls = self.window_perplexities(archs, stream, bptt)
            logged = self.reinforce.update(archs, [h.reward_constant / p for p in ppls])
            logged.pop("controller/skip_rate", None)  # no skip decisions in this space
            # the geometric mean: a few diverging cells would swamp an arithmetic one
            logged["controller/log_ppl"] = sum(math.log(p) for p in ppls) / len(ppls)
            for key, value in logged.items():
                totals[key] = totals.get(key, 0.0) + value / h.controller_steps
        self.supernet.train(was_training)
        totals["controller/ppl"] = math.exp(totals.pop("controller/log_ppl"))
        for key, value in totals.items():
            self.log(
                key, value, on_step=False, on_epoch=True, prog_bar=key.endswith("ppl"), batch_size=1
            )
        write_greedy(self.trainer, self.controller)  # <log dir>/greedy_arch.json
        return totals

    @torch.no_grad()
    def window_perplexities(self, archs, stream: torch.Tensor, bptt: int) -> list[float]:
        """Perplexity of each cell on its own random window of `bptt` steps of `stream` [rows,
        length], from a zero state; the windows of all cells run in one pass, one group each."""
        starts = torch.randint(
            0, stream.shape[1] - bptt, (len(archs),), generator=self.controller_generator
        )
        x = torch.cat([stream[:, s : s + bptt] for s in starts.tolist()]).to(self.device)
        y = torch.cat([stream[:, s + 1 : s + 1 + bptt] for s in starts.tolist()]).to(self.device)
        logits, _ = self.supernet.run(x, None, self.space.encode(archs), stream.shape[0])
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
        return torch.exp(nll.view(len(archs), -1).mean(1)).tolist()

    @torch.no_grad()
    def stream_perplexities(self, archs, stream: torch.Tensor, bptt: int) -> list[float]:
        """Perplexity of each cell on the whole of `stream` [rows, length], the state carried
        from window to window (one group of rows per cell)."""
        weights, rows, k = self.space.encode(archs), stream.shape[0], len(archs)
        hidden, total = None, torch.zeros(k, dtype=torch.float64)
        for start in range(0, stream.shape[1] - 1, bptt):
            end = min(start + bptt, stream.shape[1] - 1)
            x = stream[:, start:end].to(self.device).repeat(k, 1)
            y = stream[:, start + 1 : end + 1].to(self.device).repeat(k, 1)
            logits, hidden = self.supernet.run(x, hidden, weights, rows)
            nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
            total += nll.view(k, -1).sum(1).double().cpu()
        return torch.exp(total / (rows * (stream.shape[1] - 1))).tolist()

    # -- derive --------------------------------------------------------------------------------
    def on_fit_end(self) -> None:
        if self.hparams.derive_archs and self.trainer.is_global_zero:
            self.derive(Path(self.trainer.default_root_dir) / "search" / self.derives)

    def derive(self, out: Path, seed: int = 0) -> dict:
        """ENAS's derive step: score distinct samples of the controller on the validation stream
        (fixed: the same for all) into `out` like a search; resumable (stored scores are reused)."""
        h, datamodule = self.hparams, self.trainer.datamodule
        stream, bptt = datamodule.stream("val"), datamodule.bptt
        size = lm_size(self.space.sample(random.Random(0)), self.supernet.config)

        def evaluate(archs: list[Architecture]) -> list[dict]:
            ppls = self.stream_perplexities(archs, stream, bptt)
            return [
                {"oneshot_acc": h.reward_constant / p, "params": size[0], "macs": size[1]}
                for p in ppls
            ]

        strategy = ControllerStrategy(self.space, random.Random(seed), module=self)
        was_training = self.supernet.training
        self.supernet.eval()
        with ResultsStore(out / "results.sqlite", space=self.space) as store:
            num = min(h.derive_archs, self.space.count())
            summary = replay_or_evaluate(strategy, store, num, evaluate, h.derive_batch)
            # top = the best cell alone (ENAS retrains it); 5 random cells for comparison
            paths = write_outputs(store, self.space, str(out), k=min(5, num), top=1)
        self.supernet.train(was_training)
        best = max(summary.history, key=lambda pair: pair[1])
        report = {
            **paths,
            "best_arch_id": best[0].id,
            "best_val_ppl": h.reward_constant / best[1],
            "val_ppl": [h.reward_constant / score for _, score in summary.history],
            "score": f"reward_constant / validation perplexity (c = {h.reward_constant:g})",
        }
        write_text(out / "outputs.json", json.dumps(report, indent=2) + "\n")
        print(
            f"derive: best of {num} cells {best[0].id}, validation perplexity "
            f"{report['best_val_ppl']:.2f} -> {paths['selections']['top']}"
        )
        return report

    # -- state ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        # the controller has its own Adam (in `reinforce`); the trainer steps the shared weights
        return self.lm_optimizer(self.supernet.parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        self.checkpoint_identity(checkpoint)
        checkpoint["mask_generator"] = self.mask_generator.get_state()
        checkpoint["controller_generator"] = self.controller_generator.get_state()
        checkpoint["reinforce"] = self.reinforce.state_dict()
        checkpoint["space_fingerprint"] = self.space.fingerprint

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if "reinforce" in checkpoint:
            self.mask_generator.set_state(checkpoint["mask_generator"])
            self.controller_generator.set_state(checkpoint["controller_generator"])
            self.reinforce.load_state_dict(checkpoint["reinforce"])

"""`OneShotPanel`: one-shot accuracy and symmetrized KL of a fixed panel of architectures over training.

Cost: every `every_n_steps` training steps (plus once before the first step and once at the end)
it runs (P + 1) x `kl_examples` + P x `val_examples` image forward passes, P = panel size including
the all-on reference. A training step costs about 3 x batch_size image forwards (forward + backward),
so the overhead is about (P·(val_examples + kl_examples) + kl_examples) / (3 · every_n_steps ·
batch_size): ~1.2% for cifar_oneshot (P=7, 1000 + 64 images, every 200 steps of 1024) and ~25% for
the tiny quickstart run. Sub-architectures skip their unused paths, so this is an upper bound.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from nas.atomic import write_text
from nas.data.base import first_val_examples, fixed_train_examples
from nas.errors import check
from nas.report.panel import draw_panel, panel_accuracy, panel_kl


class OneShotPanel(L.Callback):
    """Logs `oneshot/acc/<arch id>` and `oneshot/kl/<arch id>` for a seeded panel; writes the curves.

    Curves go to `<out_dir>/kl_curves.json` as {arch_id: {"steps", "kl", "acc"}} (null out_dir:
    `<trainer.default_root_dir>/analysis`), with the panel's architectures in `panel.json`.
    `val_examples=0` switches accuracy off, `kl_examples=0` switches KL off.
    """

    def __init__(
        self,
        panel_size: int = 6,
        panel_seed: int = 0,
        include_all_on: bool = True,
        every_n_steps: int = 200,
        val_examples: int = 1000,
        kl_examples: int = 64,
        kl_seed: int = 0,
        out_dir: str | None = None,
    ):
        check(
            isinstance(every_n_steps, int) and every_n_steps >= 1,
            f"every_n_steps={every_n_steps!r} must be an integer >= 1",
        )
        check(
            val_examples >= 0 and kl_examples >= 0 and val_examples + kl_examples > 0,
            f"val_examples={val_examples} and kl_examples={kl_examples} must be >= 0 and not both 0 "
            "(use callbacks=default to switch the panel off)",
        )
        self.panel_size = panel_size
        self.panel_seed = panel_seed
        self.include_all_on = include_all_on
        self.every_n_steps = every_n_steps
        self.val_examples = val_examples
        self.kl_examples = kl_examples
        self.kl_seed = kl_seed
        self.out_dir = out_dir
        self.curves: dict[str, dict[str, list]] = {}
        self.panel = []
        self._data: dict[str, torch.Tensor] = {}
        self._batch = 256

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        check(
            hasattr(pl_module, "space") and hasattr(pl_module, "supernet"),
            f"OneShotPanel needs a OneShotModule (space + supernet), got {type(pl_module).__name__}; "
            "use callbacks=default for stand-alone runs",
        )
        self.panel = draw_panel(
            pl_module.space, self.panel_size, self.panel_seed, self.include_all_on
        )
        dm = trainer.datamodule
        if self.val_examples:
            self._data["val_x"], self._data["val_y"] = first_val_examples(dm, self.val_examples)
        if self.kl_examples:
            self._data["kl_x"] = fixed_train_examples(dm, self.kl_examples, self.kl_seed)
        self._batch = getattr(dm, "eval_batch_size", 256)
        for arch in self.panel:
            self.curves.setdefault(arch.id, {"steps": [], "kl": [], "acc": []})

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module)  # step 0: the paper's curves start near KL = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module)  # the final weights, whatever the schedule

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, pl_module) -> dict[str, dict[str, float]]:
        """{arch_id: {"acc": .., "kl": ..}} of the panel now (eval mode, no grad; mode restored)."""
        device, ghost = pl_module.device, pl_module.eval_ghost_size
        data = {k: v.to(device) for k, v in self._data.items()}
        was_training = pl_module.training
        pl_module.eval()  # ghost BN uses batch statistics in eval mode too; this only stops dropout etc.
        try:
            with torch.no_grad():
                net, space = pl_module.supernet, pl_module.space
                acc = kl = [None] * len(self.panel)
                if self.val_examples:
                    x, y = data["val_x"], data["val_y"]
                    acc = panel_accuracy(net, space, self.panel, x, y, ghost, self._batch)
                if self.kl_examples:
                    kl = panel_kl(net, space, self.panel, data["kl_x"], ghost, self._batch)
        finally:
            pl_module.train(was_training)
        return {a.id: {"acc": p, "kl": q} for a, p, q in zip(self.panel, acc, kl, strict=True)}

    def _record(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or any(
            c["steps"][-1:] == [step] for c in self.curves.values()
        ):
            return  # one measurement per step (the end of training may repeat the last one)
        values = self.measure(pl_module)
        metrics = {}
        for arch_id, v in values.items():
            curve = self.curves.setdefault(arch_id, {"steps": [], "kl": [], "acc": []})
            curve["steps"].append(step)
            for key in ("acc", "kl"):
                curve[key].append(v[key])
                if v[key] is not None:
                    metrics[f"oneshot/{key}/{arch_id}"] = v[key]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self._write(trainer)

    def _write(self, trainer) -> None:
        out = Path(self.out_dir or Path(trainer.default_root_dir) / "analysis")
        # Written whole, then renamed: a study reading them never sees a half-written file.
        write_text(
            out / "panel.json", json.dumps({a.id: a.to_dict() for a in self.panel}, indent=1) + "\n"
        )
        write_text(out / "kl_curves.json", json.dumps(self.curves, indent=1) + "\n")

    # -- checkpointing: a resumed run continues its curves --------------------------------------
    def state_dict(self) -> dict:
        return {"curves": self.curves}

    def load_state_dict(self, state_dict: dict) -> None:
        self.curves = {
            k: {n: list(v) for n, v in c.items()} for k, c in state_dict["curves"].items()
        }

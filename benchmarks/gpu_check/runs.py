"""Modules and short training runs built the way train.py builds them: Hydra composition of
conf/train.yaml with `experiment=<name>`, then `nas.config.build_module`."""

from __future__ import annotations

import gc
import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from benchmarks.gpu_check.timing import StepTimer, peak_memory_mib
from nas.config import build_module
from nas.data.batching import Split
from nas.errors import check

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sizes:
    """Everything the full run and the smoke run differ in (the code paths are the same)."""

    smoke: bool
    image: int  # side of the synthetic images of section 2
    filters: tuple[int, ...]  # supernet widths F of section 2; the first is the targets' F
    warmup: int  # untimed steps (cuDNN autotuning, allocator growth, compilation)
    steps: int  # steps per training measurement, warm-up included
    val_images: int  # validation images per ranking pass
    rank_repeats: int
    real_steps: int  # section 3 on the device
    cpu_steps: int  # section 3's CPU numerics check (the first steps only: the CPU is slow)
    real_image: int  # synthetic stand-in for Fashion-MNIST when --data is not given
    compile_backend: str  # "eager" in the smoke run: dynamo's tracing without a C++ build
    # Overrides that shrink every experiment (smoke) and per search space (`_target_` suffix).
    tiny: tuple[str, ...] = ()
    tiny_space: dict = field(default_factory=dict)


FULL = Sizes(False, 32, (16, 32), 5, 15, 5000, 5, 40, 3, 32, "inductor")
SMOKE = Sizes(
    True, 8, (4, 8), 1, 3, 64, 2, 4, 2, 16, "eager",
    tiny=("model.filters=4", "model.cells=2", "model.stages=2", "dataset.batch_size=16",
          "dataset.eval_batch_size=32"),
    tiny_space={"OneShotCellSpace": ["search_space.num_blocks=2"],
                "DartsCellSpace": ["search_space.nodes=2"],
                "EnasMicroSpace": ["search_space.nodes=4"]},
)  # fmt: skip


def compose_train(experiment: str, overrides: list[str], run_dir: Path):
    """conf/train.yaml with `experiment=<experiment>`, as Hydra composes it for a run in `run_dir`
    (the resolvers need a HydraConfig, as in tests/conftest.py)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"experiment={experiment}", *overrides],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_overrides(device: torch.device, steps: int) -> list[str]:
    """A fixed number of steps, no validation, checkpoints, logger or callbacks: only the steps."""
    return [
        "hardware=gpu" if device.type == "cuda" else "hardware=cpu",
        "logger=none",
        "callbacks=none",
        "trainer.max_epochs=-1",
        f"trainer.max_steps={steps}",
        "+trainer.limit_val_batches=0",
        "+trainer.enable_checkpointing=false",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=50",
    ]


def training_config(experiment, sizes, device, run_dir, steps, extra=(), data=None):
    """The config of a short run of `experiment`: synthetic images of `sizes.image` unless `data`
    (dataset overrides) is given; smoke runs shrunk by `sizes.tiny` (`extra` still wins)."""
    data = list(data or ["dataset=synthetic", f"dataset.image_size={sizes.image}"])
    overrides = [*run_overrides(device, steps), *data]
    if sizes.smoke:
        overrides += sizes.tiny
        space = compose_train(experiment, overrides, run_dir).search_space._target_
        overrides += sizes.tiny_space.get(space.rsplit(".", 1)[-1], [])
    cfg = compose_train(experiment, [*overrides, *extra], run_dir)
    if cfg.dataset._target_.endswith("SyntheticDataModule"):
        # just enough images for the steps in one epoch (an epoch's end would start validation,
        # ENAS's controller phase, schedules); the split sizes the experiment sets are for CIFAR
        batch = cfg.dataset.batch_size
        cfg.dataset.train_size = batch * (steps + 2)
        cfg.dataset.val_size = max(batch, cfg.dataset.eval_batch_size)
        cfg.dataset.test_size = 16
    return cfg


def typical_architecture(space):
    """A One-Shot Top stand-in: no supernet is trained here, so the first sampled architecture
    with 2 ops in every block (a typical top architecture's size; the costliest kind)."""
    rng = random.Random(1)
    for _ in range(10_000):
        arch = space.sample(rng)
        if all(len(arch[f"block{i}/ops"]) == 2 for i in range(space.num_blocks)):
            return arch
    return space.sample(rng)


def build(cfg, datamodule=None, arch=None):
    """(datamodule, module) of `cfg`, as train.py builds them (seeded first, so two runs of the
    same config start from the same weights on any device)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = datamodule or instantiate(cfg.dataset)
    module = build_module(cfg.model, cfg.search_space, arch, datamodule, cfg.get("sampler"))
    return datamodule, module


def compiled(module, backend: str):
    """`module` with its network compiled (the supernet, or a stand-alone module's child net)."""
    name = next((n for n in ("supernet", "net") if hasattr(module, n)), None)
    check(name is not None, f"{type(module).__name__}: no supernet or net to compile")
    setattr(module, name, torch.compile(getattr(module, name), backend=backend))
    return module


def fit_steps(cfg, warmup, datamodule=None, arch=None, compile_backend=None, stop_after=None):
    """Train `cfg` for its trainer.max_steps (or only the first `stop_after` of them, the schedules
    still those of max_steps): {step_ms, rate, peak_mib, losses, device}."""
    datamodule, module = build(cfg, datamodule, arch)
    if compile_backend:
        module = compiled(module, compile_backend)
    timer = StepTimer(warmup, stop_after)
    trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False)
    try:
        trainer.fit(module, datamodule=datamodule)
        step = timer.step_seconds
        return {
            "step_ms": 1e3 * step,
            "rate": datamodule.batch_size / step,
            "unit": "img/s",
            "peak_mib": peak_memory_mib(module.device),
            "losses": timer.losses,
            "device": str(module.device),
        }
    finally:
        del trainer, module
        release_memory()


def release_memory() -> None:
    """Free what the last measurement held, so the next one's peak memory is its own."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def padded_to_32(datamodule):
    """Fashion-MNIST's 28x28 images with 2 zero pixels on each side: the CIFAR-sized input the
    one-shot networks were built for (the statistics stay those of the 28x28 images)."""
    datamodule.setup()
    for name in ("train_split", "val_split", "test_split"):
        split = getattr(datamodule, name)
        setattr(datamodule, name, Split(F.pad(split.images, (2, 2, 2, 2)), split.labels))
    datamodule.image_size = 32
    return datamodule

"""Train a one-shot supernet or a stand-alone child: `python train.py experiment=quickstart`."""

from __future__ import annotations

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nas.callbacks.dataset_record import DatasetRecord
from nas.checkpointing import (
    AtomicCheckpointIO,
    RngStates,
    check_same_run,
    keep_csv_history,
    read_checkpoint,
    resume_path,
    run_dir_for,
)
from nas.cli import run_cli, user_errors
from nas.config import build_callbacks, build_module, check_run_settings, check_settings
from nas.data.contract import check_datamodule
from nas.loggers import finish_wandb
from nas.report.runs import write_run_result

OmegaConf.register_new_resolver("run_dir_for", run_dir_for, replace=True)


def train(cfg: DictConfig) -> float | None:
    """Instantiate data, model, callbacks, logger and trainer from `cfg`; fit, then test."""
    with user_errors():
        check_run_settings(cfg.seed, cfg.trainer.max_epochs, cfg.trainer.max_steps)
        run_dir = cfg.trainer.default_root_dir
        ckpt = resume_path(cfg.get("resume"), run_dir)
        raw = read_checkpoint(ckpt) if ckpt else None
        L.seed_everything(cfg.seed, workers=True)
        check_settings(cfg.dataset, "dataset")
        datamodule = instantiate(cfg.dataset)
        check_datamodule(datamodule)  # what the project reads from it (docs/datasets.md)
        module = build_module(
            cfg.model, cfg.search_space, cfg.get("arch"), datamodule, cfg.get("sampler")
        )
        if raw is not None:
            check_same_run(raw, module, ckpt)
            del raw  # Lightning reads the file again itself; keep one copy in memory at a time
        callbacks = build_callbacks(cfg.get("callbacks"))
        logger = instantiate(cfg.logger) if cfg.get("logger") else False
        if ckpt:
            keep_csv_history(logger)
        dataset = OmegaConf.to_container(cfg.dataset, resolve=True)  # recorded with every result
        trainer = instantiate(
            cfg.trainer,
            callbacks=[
                *callbacks,
                RngStates(),
                DatasetRecord(dataset),
            ],
            logger=logger,
            plugins=[AtomicCheckpointIO()],
        )
        if logger:
            trainer.logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
            metrics = dict(
                trainer.callback_metrics
            )  # validation metrics, before test replaces them
            if cfg.test_after_fit:
                trainer.test(module, datamodule=datamodule, verbose=True)
                metrics.update(trainer.callback_metrics)
        finally:
            finish_wandb()
        result = write_run_result(trainer, module, metrics, run_dir, dataset)
        return result.get("val_acc")


main = hydra.main(config_path="conf", config_name="train", version_base="1.3")(train)

if __name__ == "__main__":
    run_cli(main)

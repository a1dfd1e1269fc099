"""Train a one-shot supernet or a stand-alone child: `python train.py experiment=quickstart`."""

from __future__ import annotations

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nas.cli import user_errors, write_run_result
from nas.loggers import finish_wandb


def train(cfg: DictConfig) -> float | None:
    """Instantiate data, model, callbacks, logger and trainer from `cfg`; fit, then test."""
    with user_errors():
        L.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.dataset)
        model_kwargs = {
            "num_classes": datamodule.num_classes,
            "in_channels": datamodule.in_channels,
        }
        if cfg.get("arch"):  # stand-alone retraining of one architecture
            model_kwargs["arch"] = cfg.arch
        else:
            model_kwargs["space"] = instantiate(cfg.search_space)
        module = instantiate(cfg.model)(**model_kwargs)
        callbacks = list(instantiate(cfg.callbacks).values()) if cfg.get("callbacks") else []
        logger = instantiate(cfg.logger) if cfg.get("logger") else False
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
        if logger:
            trainer.logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
            metrics = dict(
                trainer.callback_metrics
            )  # validation metrics, before test replaces them
            if cfg.test_after_fit:
                trainer.test(module, datamodule=datamodule, verbose=True)
                metrics.update(trainer.callback_metrics)
        finally:
            finish_wandb()
        result = write_run_result(trainer, module, metrics, cfg.trainer.default_root_dir)
        return result.get("val_acc")


main = hydra.main(config_path="conf", config_name="train", version_base="1.3")(train)

if __name__ == "__main__":
    main()

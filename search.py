"""Rank architectures with a trained supernet: `python search.py experiment=quickstart ckpt=<last.ckpt>`."""

from __future__ import annotations

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nas.cli import device_of, run_cli, user_errors
from nas.search.checkpoint import load_supernet_module, run_dir_of
from nas.search.run import search, write_outputs

OmegaConf.register_new_resolver("run_dir_of", run_dir_of, replace=True)


def run(cfg: DictConfig) -> dict:
    """Score `search.num_archs` architectures into the run's results store, then rank and select."""
    with user_errors():
        L.seed_everything(cfg.seed)
        device, autocast = device_of(cfg.trainer.accelerator, cfg.trainer.precision)
        module = load_supernet_module(cfg.ckpt, device)
        datamodule = hydra.utils.instantiate(cfg.dataset)
        store = search(
            module,
            datamodule,
            cfg.out_dir,
            cfg.ckpt,
            device,
            autocast_dtype=autocast,
            **OmegaConf.to_container(cfg.search, resolve=True),
        )
        with store:
            outputs = write_outputs(store, module.space, cfg.out_dir, **cfg.selection)
            if "wandb" in str(cfg.get("logger") or {}):  # logger=wandb: ranking table + histogram
                from nas.studies.wandb_log import publish_search

                name = f"search-{cfg.search.strategy}-seed{cfg.search.seed}"
                publish_search(
                    store, outputs, cfg.logger.project, name, cfg.out_dir, cfg.logger.mode
                )
            return outputs


main = hydra.main(config_path="conf", config_name="search", version_base="1.3")(run)

if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    run_cli(main)

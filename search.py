"""Rank architectures with a trained supernet: `python search.py experiment=quickstart ckpt=<last.ckpt>`.

ckpt may also be a directory of few-shot sub-supernets (the sweep of `experiment=quickstart_fewshot`):
each architecture is then scored by the sub-supernet that holds it.
"""

from __future__ import annotations

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nas.cli import run_cli, user_errors
from nas.config import check_overrides_used, device_of
from nas.search.checkpoint import run_dir_of
from nas.search.fewshot_routing import load_supernets
from nas.search.run import search, write_outputs

OmegaConf.register_new_resolver("run_dir_of", run_dir_of, replace=True)

# search.yaml composes base.yaml for the experiments it shares with train.py, but the network, space
# and sampler come from the checkpoint: setting these on the command line would change nothing.
IGNORED = {
    "model": "the network comes from the checkpoint",
    "search_space": "the search space comes from the checkpoint",
    "sampler": "the sampler only shapes training",
    "callbacks": "a search trains nothing",
}
INSTEAD = {"model.eval_ghost_size": "search.eval_ghost_size"}


def run(cfg: DictConfig) -> dict:
    """Score `search.num_archs` architectures into the run's results store, then rank and select."""
    with user_errors():
        check_overrides_used("search.py", IGNORED, INSTEAD)
        L.seed_everything(cfg.seed)
        device, autocast = device_of(cfg.trainer.accelerator, cfg.trainer.precision)
        module = load_supernets(cfg.ckpt, device)  # a list for a directory of sub-supernets
        datamodule = hydra.utils.instantiate(cfg.dataset)
        strategy = OmegaConf.to_container(cfg.strategy, resolve=True)
        name = strategy.pop("name")
        store = search(
            module,
            datamodule,
            cfg.out_dir,
            cfg.ckpt,
            device,
            strategy=name,
            strategy_kwargs=strategy,
            autocast_dtype=autocast,
            **OmegaConf.to_container(cfg.search, resolve=True),
        )
        space = (module[0] if isinstance(module, list) else module).space
        with store:
            outputs = write_outputs(store, space, cfg.out_dir, **cfg.selection)
            if "wandb" in str(cfg.get("logger") or {}):  # logger=wandb: ranking table + histogram
                from nas.studies.wandb_log import publish_search

                run_name = f"search-{name}-seed{cfg.search.seed}"
                publish_search(
                    store, outputs, cfg.logger.project, run_name, cfg.out_dir, cfg.logger.mode
                )
            return outputs


main = hydra.main(config_path="conf", config_name="search", version_base="1.3")(run)

if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    run_cli(main)

"""Rank architectures with a trained supernet: `python search.py experiment=quickstart ckpt=<last.ckpt>`.

ckpt may also be a directory of runs that one search scores together (e.g. the sweep of few-shot
sub-supernets, each architecture scored by the one that holds it): their method decides.
`search.shard=i search.num_shards=n` scores one of n disjoint parts of the same proposals (one
process per GPU or machine); `python -m nas.search.merge <out_dir>` then ranks and selects
(docs/scaling.md).
`strategy=proxy proxy=<name>` scores with a zero-cost proxy instead, with or without a checkpoint
(nas/search/proxy_scorer.py).
"""

from __future__ import annotations

import sys

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nas.cli import run_cli, user_errors
from nas.config import check_overrides_used, command_line_overrides, device_of
from nas.data.contract import check_datamodule
from nas.errors import check
from nas.results.outputs import write_outputs
from nas.search.checkpoint import load_for_search, scoring_dataset
from nas.search.proxy_scorer import proxy_subject, refuse_missing_checkpoint
from nas.search.run import search  # also registers search.yaml's resolvers
from nas.search.strategies import strategy_name

# search.yaml composes base.yaml for the experiments it shares with train.py, but the network, space
# and sampler come from the checkpoint: setting these on the command line would change nothing.
IGNORED = {
    "model": "the network comes from the checkpoint",
    "search_space": "the search space comes from the checkpoint",
    "sampler": "the sampler only shapes training",
    "callbacks": "a search trains nothing",
}
INSTEAD = {"model.eval_ghost_size": "search.eval_ghost_size"}
# A proxy search without a checkpoint builds its children from the config's space and network.
IGNORED_WITHOUT_CKPT = {k: v for k, v in IGNORED.items() if k not in ("model", "search_space")}


def run(cfg: DictConfig) -> dict:
    """Score `search.num_archs` architectures into the run's results store, then rank and select."""
    with user_errors():
        proxy = cfg.get("proxy")  # strategy=proxy: a zero-cost proxy scores, not a supernet
        refuse_missing_checkpoint(cfg.ckpt, proxy)
        ignored = IGNORED if cfg.ckpt is not None else IGNORED_WITHOUT_CKPT
        check_overrides_used("search.py", ignored, INSTEAD)
        L.seed_everything(cfg.seed)
        device, autocast = device_of(cfg.trainer.accelerator, cfg.trainer.precision)
        device = _one_device(device, cfg.trainer.devices)
        module, trained = None, None
        if cfg.ckpt is not None:  # what the checkpoints' method searches
            module, trained = load_for_search(cfg.ckpt, device)
        dataset, warning = scoring_dataset(
            OmegaConf.to_container(cfg.dataset, resolve=True), trained, _dataset_given()
        )
        if warning:
            print(warning, file=sys.stderr)
        datamodule = hydra.utils.instantiate(dataset)
        check_datamodule(datamodule, scoring=True)  # the in-memory validation split too
        if proxy is not None:  # scores in place of the module's one-shot evaluator
            module, source = proxy_subject(
                OmegaConf.to_container(proxy, resolve=True), module, cfg, datamodule, device
            )
            print(source, file=sys.stderr)
        strategy = OmegaConf.to_container(cfg.strategy, resolve=True)
        store = search(
            module,
            datamodule,
            cfg.out_dir,
            cfg.ckpt,
            device,
            strategy=strategy,
            dataset=dataset,
            autocast_dtype=autocast,
            **OmegaConf.to_container(cfg.search, resolve=True),
        )
        space = module.space
        if cfg.search.num_shards > 1:  # ranking and selections come from the merge of all shards
            from nas.results.outputs import console  # here: Hydra launchers pickle this function

            store.close()
            console.print(
                f"shard {cfg.search.shard} of {cfg.search.num_shards} done; when every shard is, "
                f"rank and select: python -m nas.search.merge {cfg.out_dir}"
            )
            return {"store": str(store.path)}
        with store:
            outputs = write_outputs(store, space, cfg.out_dir, **cfg.selection)
            if "wandb" in str(cfg.get("logger") or {}):  # logger=wandb: ranking table + histogram
                from nas.report.wandb_log import publish_search

                run_name = f"search-{strategy_name(strategy)}-seed{cfg.search.seed}"
                publish_search(
                    store, outputs, cfg.logger.project, run_name, cfg.out_dir, cfg.logger.mode
                )
            return outputs


def _dataset_given() -> bool:
    """Whether the command line chose the data (an experiment or a dataset setting); without
    either, a search scores on the data the checkpoint was trained on."""
    overrides = command_line_overrides()
    if overrides is None:
        return True  # called from code: the config given is the one meant
    return any(group in ("dataset", "experiment") for *_, group in overrides)


def _one_device(device: torch.device, devices) -> torch.device:
    """The device a search process scores on: `trainer.devices` may name one CUDA index ([2] or
    "2,"); a search process uses one device, so more are refused (shards use several)."""
    if device.type != "cuda" or str(devices) in ("1", "auto", "-1", "None"):
        return device
    if isinstance(devices, str):
        indices = [d for d in devices.split(",") if d.strip()]
    elif isinstance(devices, int):
        indices = list(range(devices))
    else:
        indices = list(devices)
    check(
        len(indices) == 1,
        f"trainer.devices={devices!r}: search.py scores on one device; to rank on several GPUs "
        "run one shard per GPU (search.shard=<i> search.num_shards=<n> with CUDA_VISIBLE_DEVICES=<i> "
        "or trainer.devices=[<i>]; docs/scaling.md)",
    )
    return torch.device("cuda", int(indices[0]))


main = hydra.main(config_path="conf", config_name="search", version_base="1.3")(run)

if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    run_cli(main)

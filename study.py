"""Run one of the paper's analyses: `python study.py study=<name> ...` (see conf/study/*.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nas.cli import run_cli, user_errors
from nas.config import check_overrides_used
from nas.search.checkpoint import run_dir_of

OmegaConf.register_new_resolver("run_dir_of", run_dir_of, replace=True)
OmegaConf.register_new_resolver("dir_of", lambda p: str(Path(str(p)).parent), replace=True)

# study.yaml composes base.yaml for the experiments (their dataset), but the studies read networks
# from checkpoints and scores from results stores: setting these would change nothing.
IGNORED = {
    "model": "the studies read the network from the checkpoint",
    "search_space": "the studies read the search space from the checkpoint or results store",
    "sampler": "the studies read the sampler from the checkpoint",
    "callbacks": "a study trains nothing",
}


def run(cfg: DictConfig) -> dict:
    """Instantiate `cfg.study` (a study function with its arguments), run it, print its outputs."""
    with user_errors():
        check_overrides_used("study.py", IGNORED)
        L.seed_everything(cfg.seed)
        outputs = instantiate(cfg.study, _convert_="all")
        print(json.dumps(outputs, indent=2, default=str))
        return outputs


main = hydra.main(config_path="conf", config_name="study", version_base="1.3")(run)

if __name__ == "__main__":
    run_cli(main)

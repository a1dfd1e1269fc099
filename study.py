"""Run one of the paper's analyses: `python study.py study=<name> ...` (see conf/study/*.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nas.cli import user_errors
from nas.search.checkpoint import run_dir_of

OmegaConf.register_new_resolver("run_dir_of", run_dir_of, replace=True)
OmegaConf.register_new_resolver("dir_of", lambda p: str(Path(str(p)).parent), replace=True)


def run(cfg: DictConfig) -> dict:
    """Instantiate `cfg.study` (a study function with its arguments), run it, print its outputs."""
    with user_errors():
        L.seed_everything(cfg.seed)
        outputs = instantiate(cfg.study, _convert_="all")
        print(json.dumps(outputs, indent=2, default=str))
        return outputs


main = hydra.main(config_path="conf", config_name="study", version_base="1.3")(run)

if __name__ == "__main__":
    main()

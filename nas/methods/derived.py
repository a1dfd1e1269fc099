"""A method's derived architecture written as a search result: store, ranking, selections.

Methods that end with one architecture (BayesNAS pruning, DARTS and GDAS derivation) write it to
`<run>/search/<method>/` exactly as `search.py` writes a search, so stand-alone retraining
(`arch=<...>/selections/top_0_<id>.json` or `<...>/derived_arch.json`) and Table 1 take it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from nas.atomic import write_text
from nas.spaces import Architecture


@torch.no_grad()
def validation_accuracy(module, weights: Mapping[str, torch.Tensor]) -> float:
    """Accuracy of `module.supernet` with path `weights` on the datamodule's validation split."""
    datamodule = module.trainer.datamodule
    split, size = datamodule.val_split, datamodule.eval_batch_size
    was_training = module.supernet.training
    module.supernet.eval()
    correct = 0
    for start in range(0, len(split), size):
        x = datamodule.normalize(split.images[start : start + size].to(module.device))
        y = split.labels[start : start + size].to(module.device)
        correct += int((module.supernet(x, weights, module.eval_ghost_size).argmax(1) == y).sum())
    module.supernet.train(was_training)
    return correct / len(split)


def write_derived(
    module, arch: Architecture, out: Path, score: float, extra: Mapping | None = None
) -> dict:
    """Store `arch` with its one-shot `score`, then ranking, selections and `derived_arch.json`."""
    from nas.search.complexity import SizeTable
    from nas.search.run import write_outputs
    from nas.search.store import ResultsStore

    out.mkdir(parents=True, exist_ok=True)
    h = module.hparams
    network = {k: h[k] for k in ("filters", "cells", "stages", "num_classes", "in_channels")}
    shape = tuple(module.trainer.datamodule.val_split.images.shape[1:])
    params, macs = SizeTable(module.space, network, shape)(arch)
    row = {"arch": arch, "oneshot_acc": score, "params": params, "macs": macs}
    with ResultsStore(out / "results.sqlite", space=module.space) as store:
        if store.get(arch.id) is None:
            store.add(row)
        paths = write_outputs(store, module.space, str(out), k=1, top=1)
    arch.save(out / "derived_arch.json")
    summary = {
        **paths,
        "arch": str(out / "derived_arch.json"),
        "oneshot_acc": score,
        **(extra or {}),
    }
    write_text(out / "outputs.json", json.dumps(summary, indent=2) + "\n")
    return summary

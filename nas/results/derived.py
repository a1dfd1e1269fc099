"""A method's derived architecture written as a search result: store, ranking, selections.

Methods that end with one architecture (BayesNAS pruning, DARTS and GDAS derivation) write it to
`<run>/search/<method>/` exactly as `search.py` writes a search, so stand-alone retraining
(`arch=<...>/selections/top_0_<id>.json` or `<...>/derived_arch.json`) and Table 1 take it unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from nas.atomic import write_text
from nas.results.complexity import SizeTable
from nas.results.outputs import write_outputs
from nas.results.store import ResultsStore
from nas.spaces import Architecture
from nas.spaces.interface import network_of


def write_derived(
    module, arch: Architecture, out: Path, score: float, extra: Mapping | None = None
) -> dict:
    """Store `arch` with its one-shot `score`, then ranking, selections and `derived_arch.json`."""
    out.mkdir(parents=True, exist_ok=True)
    h = module.hparams
    network = network_of(h)
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

"""KL vs accuracy (paper Fig. 6): symmetrized KL to the all-on model against one-shot accuracy.

For a seeded sample of the searched architectures: the mean symmetrized KL between the all-on
supernet's and the architecture's predictions on `examples` fixed, un-augmented training images
(no labels), against the one-shot validation accuracy the search stored for it.
"""

from __future__ import annotations

import random
from pathlib import Path

from nas.config import device_of
from nas.data.base import fixed_train_examples
from nas.errors import check
from nas.report.figures import plot_kl_vs_accuracy
from nas.report.panel import panel_kl
from nas.report.stats import rank_correlations
from nas.report.stores import open_store
from nas.report.studies.common import arch_of, write_json
from nas.search.checkpoint import load_supernet_module


def kl_accuracy_study(
    ckpt: str,
    store: str,
    datamodule,
    out_dir: str,
    num_archs: int = 200,
    examples: int = 64,
    seed: int = 0,
    kl_seed: int = 0,
    accelerator: str = "cpu",
) -> dict:
    """Plot KL vs one-shot accuracy for up to `num_archs` stored architectures; write correlations."""
    check(num_archs >= 2, f"num_archs={num_archs} must be >= 2 to correlate anything")
    device, _ = device_of(accelerator, "32-true")  # float32: small KL differences matter here
    module = load_supernet_module(ckpt, device)
    rows, space, _ = open_store(store)
    check(
        space.fingerprint == module.space.fingerprint,
        f"results store {store!r} holds architectures of another space than checkpoint {ckpt!r}; "
        "pass the store of a search with this checkpoint",
    )
    if len(rows) > num_archs:
        rows = random.Random(seed).sample(rows, num_archs)
    archs = [arch_of(r, space) for r in rows]
    x = fixed_train_examples(datamodule, examples, kl_seed).to(device)
    kl = panel_kl(module.supernet, space, archs, x, module.eval_ghost_size)
    acc = [r["oneshot_acc"] for r in rows]
    stats = rank_correlations(kl, acc)
    out = Path(out_dir)
    figure = plot_kl_vs_accuracy(kl, acc, out / "kl_vs_accuracy.png", stats=stats)
    numbers = {
        "checkpoint": str(Path(ckpt).resolve()),
        "store": str(Path(store).resolve()),
        "examples": examples,
        "kl_seed": kl_seed,
        "eval_ghost_size": module.eval_ghost_size,
        "stats": stats,
        "archs": [
            {"arch_id": r["arch_id"], "kl": k, "oneshot_acc": r["oneshot_acc"]}
            for r, k in zip(rows, kl, strict=True)
        ],
    }
    write_json(out / "kl_vs_accuracy.json", numbers)
    return {"figure": str(figure), "numbers": str(out / "kl_vs_accuracy.json"), "stats": stats}

"""What the project reads from a datamodule, checked where one is built (train.py, search.py).

Any LightningDataModule named by `dataset._target_` can train: the modules are built from its
`num_classes` and `in_channels`, and Lightning draws batches from its loaders (float images
[B, C, H, W], ready for the network, and int64 labels [B]). Scoring with a supernet's shared
weights (search.py), the one-shot panel and the methods that draw their own batches (ENAS,
DARTS/GDAS, BayesNAS) also read its splits from memory: a `TensorImageDataModule` (subclass it and
write `_load`) has them. docs/datasets.md writes this down.
"""

from __future__ import annotations

import lightning as L

from nas.data.batching import Split
from nas.errors import check

TRAINING = {
    "num_classes": "the number of classes, an int >= 2 (the classifier's outputs)",
    "in_channels": "the image channels, an int >= 1 (the first convolution's inputs)",
}
SCORING = {
    "val_split": "the validation split in memory after setup(): a nas.data.Split (uint8 images "
    "[N, C, H, W], int64 labels [N]); its image size sizes the networks",
    "normalize": "normalize(uint8 images) -> float images, as the loaders' batches are",
    "eval_batch_size": "validation images per forward pass, an int >= 1",
}
DOCS = "docs/datasets.md"


def check_datamodule(datamodule, scoring: bool = False) -> None:
    """Stop with one line naming whatever `datamodule` lacks of what the project reads.

    `scoring`: also what search.py reads (the in-memory validation split); it calls `setup()`
    first, as the search does next.
    """
    name = type(datamodule).__name__
    check(
        isinstance(datamodule, L.LightningDataModule),
        f"dataset._target_ built a {name}, not a LightningDataModule; the dataset must be one "
        f"(with {', '.join(TRAINING)}; {DOCS})",
    )
    _check_attributes(datamodule, TRAINING, "every run needs")
    for attribute, least in (("num_classes", 2), ("in_channels", 1)):
        value = getattr(datamodule, attribute)
        check(
            isinstance(value, int) and not isinstance(value, bool) and value >= least,
            f"{name}.{attribute}={value!r}: expected an int >= {least} ({TRAINING[attribute]}; "
            f"{DOCS})",
        )
    if scoring:
        datamodule.setup("validate")
        _check_attributes(datamodule, SCORING, "search.py needs")
        split = datamodule.val_split
        check(
            isinstance(split, Split),
            f"{name}.val_split is a {type(split).__name__}, but search.py needs {SCORING['val_split']}; "
            f"subclass nas.data.TensorImageDataModule ({DOCS})",
        )


def _check_attributes(datamodule, needed: dict[str, str], who: str) -> None:
    missing = [attribute for attribute in needed if not hasattr(datamodule, attribute)]
    check(
        not missing,
        f"{type(datamodule).__name__} lacks {', '.join(missing)}, which {who}: "
        f"{'; '.join(f'{a}: {needed[a]}' for a in missing)} ({DOCS}; a nas.data."
        "TensorImageDataModule subclass has them all)",
    )

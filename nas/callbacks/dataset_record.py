"""`DatasetRecord`: the dataset a module was trained on travels with its checkpoints.

A search then scores on the training data unless told otherwise (`search.py` reads it back with
`nas.search.checkpoint.trained_dataset`), and says so when a dataset given explicitly differs.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.callbacks import Callback

from nas.search.checkpoint import DATASET_KEY


class DatasetRecord(Callback):
    """Writes the run's dataset config (plain values, `_target_` included) into every checkpoint."""

    def __init__(self, dataset: Mapping):
        self.dataset = dict(dataset)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[DATASET_KEY] = self.dataset

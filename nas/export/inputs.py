"""What the exported network's inputs must be: shape, and the normalisation of the training data.

The network was trained on images that the datamodule normalised with the per-channel mean and std
of its training split (`TensorImageDataModule.normalize`: x = (pixels / 255 - mean) / std). Those
constants are not in the checkpoint: the dataset config it records (`DatasetRecord`) is built again
and set up, so they are computed from the same training split, as the training run computed them.
Class names come from the datamodule's `class_names` (or `classes`) when it has them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nas.errors import NasError, check
from nas.search.checkpoint import DATASET_KEY


def trained_dataset(raw: Mapping, config: Mapping | None, path: Path) -> dict:
    """The dataset config the checkpoint was trained on: recorded in it by train.py, or, for
    checkpoints written before that, the run's Hydra config."""
    dataset = raw.get(DATASET_KEY) or (config or {}).get("dataset")
    check(
        isinstance(dataset, Mapping) and "_target_" in dataset,
        f"checkpoint {str(path)!r} records no dataset config and its run has no .hydra/config.yaml; "
        "the normalisation constants come from the training data: export a checkpoint written by "
        "train.py in its run directory",
    )
    return dict(dataset)


def build_datamodule(dataset: Mapping):
    """The datamodule of `dataset` with its splits loaded (its training statistics known)."""
    from hydra.utils import instantiate

    target = dataset.get("_target_")
    try:
        datamodule = instantiate(dict(dataset))
        datamodule.setup("fit")
    except Exception as err:
        nas_errors = [e for e in _chain(err) if isinstance(e, NasError)]
        reason = (
            str(nas_errors[0])
            if nas_errors
            else f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
        )
        raise NasError(
            f"the training data ({target}) could not be loaded to compute the inputs' "
            f"normalisation: {reason}"
        ) from None
    return datamodule


def _chain(err: BaseException):
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _image_size(datamodule, target: str) -> tuple[int, int]:
    size = getattr(datamodule, "image_size", None)
    check(
        size is not None,
        f"{target} has no image_size; a datamodule of images states it (an int, or (height, width))",
    )
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _class_names(datamodule, num_classes: int) -> list[str] | None:
    names = getattr(datamodule, "class_names", None) or getattr(datamodule, "classes", None)
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) == num_classes:
        return [str(n) for n in names]
    return None


def input_spec(dataset: Mapping, hparams: Mapping) -> dict:
    """The manifest's `input` and `output` sections for a network trained on `dataset`."""
    datamodule = build_datamodule(dataset)
    target = str(dataset["_target_"])
    channels, classes = int(datamodule.in_channels), int(datamodule.num_classes)
    for key, value in (("in_channels", channels), ("num_classes", classes)):
        check(
            hparams.get(key, value) == value,
            f"the checkpoint's model.{key}={hparams.get(key)!r} differs from its dataset's "
            f"({target}: {value}); the recorded dataset config is not the one it was trained on",
        )
    height, width = _image_size(datamodule, target)
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    check(
        mean is not None and std is not None,
        f"{target} has no mean/std; the network's inputs are normalised by its datamodule, which "
        "must state the per-channel mean and std of its training split (in [0, 1] pixel units)",
    )
    return {
        "input": {
            "shape": ["batch", channels, height, width],
            "dtype": "float32",
            "layout": "NCHW",
            "channels": channels,
            "height": height,
            "width": width,
            "pixel_scale": 255,
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "normalize": "x[:, c] = (pixels[:, c] / 255 - mean[c]) / std[c], pixels in 0..255",
        },
        "output": {
            "shape": ["batch", classes],
            "num_classes": classes,
            "class_names": _class_names(datamodule, classes),
            "meaning": "class scores (logits): argmax is the class, softmax the probabilities",
        },
    }

"""The user's own data: image folders, files of arrays, any DataModule, and their bad inputs.

Folders are a few tiny PNGs written with PIL in tmp_path; pixels and statistics are checked against
PIL's own decoding and NumPy's moments.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import runpy
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from nas.data import OWN_DATA, ImageFolderDataModule, TensorFileDataModule, check_datamodule
from nas.data.stats_cache import CACHE_NAME, content_key, read_cached
from nas.errors import NasError
from tests.conftest import ROOT, compose_config

CONF = ROOT / "conf" / "dataset"


def write_images(folder: Path, count: int, size=(8, 8), mode="L", seed=0, start=0) -> None:
    """`count` random PNGs of `size` (width, height) and PIL `mode` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    for i in range(start, start + count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i:03d}.png")


def pooled(root: Path, per_class=(10, 10, 10), mode="L", size=(8, 8)) -> Path:
    for label, count in enumerate(per_class):
        write_images(root / f"class{label}", count, size, mode, seed=label)
    return root


def folder_module(root: Path, **settings) -> ImageFolderDataModule:
    settings = {"batch_size": 4, "num_workers": 0, **settings}
    return ImageFolderDataModule(str(root), **settings)


def pil_pixels(path: str) -> torch.Tensor:
    array = np.array(Image.open(path))
    return (
        torch.from_numpy(array).unsqueeze(0)
        if array.ndim == 2
        else torch.from_numpy(array).permute(2, 0, 1)
    )


# --- image folders ------------------------------------------------------------------------------


def test_pooled_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = pooled(tmp_path / "data", per_class=(10, 20, 5))
    dm = folder_module(root, val_fraction=0.2, test_fraction=0.1)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (3, 1, 8)
    # per class: round(n * 0.2) validation, round(n * 0.1) test (halves up), the rest trains
    expected = {"val": [2, 4, 1], "test": [1, 2, 1], "train": [7, 14, 3]}
    paths = {}
    for name, counts in expected.items():
        labels = dm.labels(name)
        assert torch.bincount(labels, minlength=3).tolist() == counts
        paths[name] = dm.paths(name)
        assert all(
            Path(p).parent.name == f"class{y}"
            for p, y in zip(paths[name], labels.tolist(), strict=True)
        )
    every = [p for name in paths for p in paths[name]]
    assert sorted(every) == sorted(str(p) for p in root.rglob("*.png"))  # each file exactly once
    assert dm.paths("val") == folder_module(root, val_fraction=0.2, test_fraction=0.1).paths("val")
    other = folder_module(root, val_fraction=0.2, test_fraction=0.1, seed=1)
    assert sorted(other.paths("val")) != sorted(paths["val"])


def test_pixels_are_pils_and_statistics_are_the_training_splits(tmp_path):
    root = pooled(tmp_path / "data", per_class=(6, 6), mode="RGB")
    dm = folder_module(root, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert dm.in_channels == 3 and not dm.streamed
    for name in ("train", "val", "test"):
        split = getattr(dm, f"{name}_split")
        assert torch.equal(split.images, torch.stack([pil_pixels(p) for p in dm.paths(name)]))
        assert torch.equal(split.labels, dm.labels(name))
    train = np.stack([np.asarray(Image.open(p)) for p in dm.paths("train")]) / 255  # N, H, W, C
    np.testing.assert_allclose(dm.mean, train.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(dm.std, train.std(axis=(0, 1, 2)), rtol=1e-12)


def test_statistics_are_cached_beside_the_data_keyed_by_the_files(tmp_path):
    root = pooled(tmp_path / "data", per_class=(6, 6))
    dm = folder_module(root)
    dm.setup()
    cache = json.loads((root / CACHE_NAME).read_text())
    ((key, entry),) = cache.items()
    assert entry["mean"] == list(dm.mean) and entry["std"] == list(dm.std)
    assert key == content_key(root, {n: dm.paths(n) for n in dm.splits}, 8, 1)
    # a streamed module takes the statistics from the cache: a changed cache value shows it
    entry["mean"] = [0.25]
    (root / CACHE_NAME).write_text(json.dumps({key: entry}))
    streamed = folder_module(root, max_memory_mb=dm.image_bytes / 2**20 / 2)
    streamed.setup()
    assert streamed.streamed and streamed.mean == (0.25,)
    # another file's contents (and time) change the key: computed afresh, the old entry kept
    first = dm.paths("train")[0]
    write_images(Path(first).parent, 1, seed=99, start=int(Path(first).stem))
    os.utime(first, ns=(1, 1))
    again = folder_module(root, max_memory_mb=dm.image_bytes / 2**20 / 2)
    again.setup()
    assert again.mean != (0.25,) and len(json.loads((root / CACHE_NAME).read_text())) == 2
    reference = folder_module(root)
    reference.setup()
    assert again.mean == pytest.approx(reference.mean, rel=1e-12)
    assert again.std == pytest.approx(reference.std, rel=1e-12)


def test_cache_goes_to_the_user_cache_when_the_root_cannot_be_written(
    tmp_path, monkeypatch, caplog
):
    from nas.data import stats_cache

    root = pooled(tmp_path / "data", per_class=(4, 4))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_text = stats_cache.write_text

    def read_only_root(path, text):  # as on read-only media: the root refuses new files
        if Path(path).parent == root:
            raise PermissionError(13, "Permission denied", str(path))
        return write_text(path, text)

    monkeypatch.setattr(stats_cache, "write_text", read_only_root)
    dm = folder_module(root, val_fraction=0.25, test_fraction=0.25)
    with caplog.at_level(logging.INFO, logger="nas.data"):
        dm.setup()
    written = stats_cache.user_cache_file(root)
    assert written.is_file() and written.is_relative_to(tmp_path / "cache" / "oneshot-nas")
    assert not (root / CACHE_NAME).exists()
    assert (
        f"cannot be written (Permission denied): normalisation statistics cached in {written}"
        in caplog.text
    )
    key = content_key(root, {n: dm.paths(n) for n in dm.splits}, 8, 1)
    assert read_cached(root, key)["mean"] == list(dm.mean)


def test_split_folders_are_used_and_a_missing_one_is_split_off_train(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        write_images(root / "train" / name, 6, seed=len(name))
    write_images(root / "test" / "b", 3, seed=7)  # test/ lacks class a: labels still follow train/
    dm = folder_module(root, val_fraction=0.5)
    assert dm.classes == ["a", "b"]
    assert sorted(dm.paths("test")) == sorted(str(p) for p in (root / "test").rglob("*.png"))
    assert dm.labels("test").tolist() == [1, 1, 1]
    assert torch.bincount(dm.labels("val")).tolist() == [3, 3]  # split off train/ by val_fraction
    assert torch.bincount(dm.labels("train")).tolist() == [3, 3]
    assert all("/train/" in p for p in dm.paths("val") + dm.paths("train"))


def test_streamed_splits_hold_the_same_images_as_in_memory(tmp_path):
    root = pooled(tmp_path / "data", per_class=(8, 8, 8))
    memory = folder_module(root, val_fraction=0.25, test_fraction=0.25)
    memory.setup()
    (root / CACHE_NAME).unlink()  # the streamed module computes its own statistics
    streamed = folder_module(
        root, val_fraction=0.25, test_fraction=0.25, max_memory_mb=memory.image_bytes / 2**20 / 2
    )
    streamed.setup()
    assert streamed.streamed and (streamed.mean, streamed.std) == (memory.mean, memory.std)
    assert torch.equal(streamed.val_split.images, memory.val_split.images)
    batches = list(streamed.train_dataloader())
    assert [len(y) for _, y in batches] == [4, 4, 4]  # 12 training images, full batches only
    images = torch.cat([x for x, _ in batches])
    assert images.dtype == torch.uint8 and images.shape == (12, 1, 8, 8)
    order = streamed.train_dataloader().sampler.__iter__()
    assert torch.equal(images, memory.train_split.images[list(order)])
    test = torch.cat([x for x, _ in streamed.test_dataloader()])
    assert torch.equal(test, memory.test_split.images)
    with pytest.raises(
        NasError, match="training split is streamed from disk .* raise dataset.max_memory_mb"
    ):
        _ = streamed.train_split
    with pytest.raises(NasError, match="the validation split alone needs 0.000366 MB in memory"):
        folder_module(root, val_fraction=0.25, test_fraction=0.25, max_memory_mb=1e-4)


def test_non_image_files_are_skipped_and_counted(tmp_path, caplog):
    root = pooled(tmp_path / "data", per_class=(5, 5))
    (root / "class0" / "notes.txt").write_text("not an image")
    (root / "class1" / "labels.csv").write_text("1,2")
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    with caplog.at_level(logging.INFO, logger="nas.data"):
        dm = folder_module(root, val_fraction=0.2, test_fraction=0.2)
    assert dm.num_classes == 2
    assert sum(len(dm.paths(n)) for n in dm.splits) == 10
    assert "skipped 2 file(s) that are not images (e.g. " in caplog.text


def test_mixed_sizes_and_modes_are_resized_converted_and_said(tmp_path, caplog):
    root = pooled(tmp_path / "data", per_class=(5, 5))
    red = np.zeros((12, 8, 3), dtype=np.uint8)  # 8 wide, 12 high, RGB
    red[..., 0] = 255
    red[:, :, 1] = np.arange(12)[:, None] * 20  # rows tell where the centre crop cut
    Image.fromarray(red).save(root / "class1" / "tall.png")
    dm = folder_module(root, val_fraction=0.2, test_fraction=0.2)
    with caplog.at_level(logging.INFO, logger="nas.data"):
        dm.setup()
    assert (
        "resized 1 of 11 images to 8x8 (shorter side, then centre crop; sizes 8x12 (1))"
        in caplog.text
    )
    assert "converted 1 of 11 to L (from RGB (1))" in caplog.text
    split = next(n for n in dm.splits if str(root / "class1" / "tall.png") in dm.paths(n))
    index = dm.paths(split).index(str(root / "class1" / "tall.png"))
    got = getattr(dm, f"{split}_split").images[index, 0]
    # PIL's L = (299 R + 587 G + 114 B) / 1000, rounded; the crop keeps rows 2..9 of 12
    green = torch.arange(2, 10)[:, None].expand(8, 8) * 20
    assert torch.equal(got.long(), (299 * 255 + 587 * green + 500) // 1000)


BAD_FOLDERS = {
    "missing root": (lambda root: None, "does not exist; pass the folder of your images"),
    "root is a file": (lambda root: root.write_text("x"), "is a file, not a folder"),
    "no class folders": (lambda root: root.mkdir(), "has no class folders"),
    "empty class folder": (
        lambda root: (pooled(root, (5, 5)), (root / "class2").mkdir()),
        "class folder {root}/class2 holds no images",
    ),
    "single class": (
        lambda root: pooled(root, (9,)),
        "has 1 class folder (class0); a classifier needs at least 2",
    ),
    "both layouts": (
        lambda root: (pooled(root, (3, 3)), write_images(root / "train" / "a", 2)),
        "mixes split folders (train/) with other folders ['class0', 'class1']",
    ),
    "val/ has a class train/ lacks": (
        lambda root: (pooled(root / "train", (3, 3)), write_images(root / "val" / "zebra", 2)),
        "class folder(s) ['zebra'] that train/ does not have",
    ),
    "val fraction leaves it empty": (
        lambda root: pooled(root, (3, 4)),
        "dataset.val_fraction=0.1 leaves the validation split empty: 7 examples in 2 classes (at "
        "most 4 per class) give round(4 * 0.1) = 0 per class; raise dataset.val_fraction to at "
        "least 0.125",
    ),
    "fractions leave a class no training": (
        lambda root: pooled(root, (2, 10)),
        "class 'class0' has 2 example(s), and dataset.val_fraction=0.4, dataset.test_fraction=0.4 "
        "hold out all of them",
    ),
    "first image not square": (
        lambda root: pooled(root, (5, 5), size=(8, 6)),
        "dataset.image_size=null takes the first image's size, but {root}/class0/000.png is 8x6",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_bad_folders_stop_with_one_line_naming_the_fix(case, tmp_path):
    make, message = BAD_FOLDERS[case]
    root = tmp_path / "data"
    make(root)
    before = sorted(tmp_path.rglob("*"))
    fractions = {"val_fraction": 0.4, "test_fraction": 0.4} if "no training" in case else {}
    fractions = {"test_fraction": 0.4} if "leaves it empty" in case else fractions
    with pytest.raises(NasError) as error:
        folder_module(root, **fractions).setup()
    assert message.format(root=root) in str(error.value) and "\n" not in str(error.value)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("max_memory_mb", [2048, 500 / 2**20])  # in memory; streamed
def test_a_corrupt_image_is_named_and_nothing_is_written(tmp_path, max_memory_mb):
    root = pooled(tmp_path / "data", per_class=(6, 6))
    broken = root / "class1" / "002.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    dm = folder_module(root, max_memory_mb=max_memory_mb, val_fraction=0.5, test_fraction=0.2)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(NasError, match=f"cannot read image {broken} .*: replace or delete it"):
        dm.setup()
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no statistics cached


def test_make_image_folder_writes_pngs_the_folder_reads_back(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    out = tmp_path / "digits"
    script = str(ROOT / "scripts" / "make_image_folder.py")
    monkeypatch.setattr(sys, "argv", [script, str(out), "--per-class", "4", "--source", "digits"])
    runpy.run_path(script, run_name="__main__")
    assert sorted(p.name for p in out.iterdir()) == [str(d) for d in range(10)]
    dm = folder_module(out, val_fraction=0.25, test_fraction=0.25, batch_size=2)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 8)
    digits = load_digits()
    path = dm.paths("train")[0]
    expected = np.round(digits.images[int(Path(path).stem)] * 255 / 16)
    assert Path(path).parent.name == str(digits.target[int(Path(path).stem)])
    np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (LeCun's format: 0, 0, type 0x08 = uint8, ndim, big-endian sizes, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_make_image_folder_takes_fashion_mnist_when_installed(tmp_path):
    from scripts.make_image_folder import FASHION_CLASSES, write_folder

    fashion = tmp_path / "fashion"
    fashion.mkdir()
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10
    for split, count in (("train", 30), ("t10k", 1)):
        write_idx(fashion / f"{split}-images-idx3-ubyte", images[:count])
        write_idx(fashion / f"{split}-labels-idx1-ubyte", labels[:count])
    out = tmp_path / "out"
    assert write_folder(out, per_class=2, fashion_dir=fashion) == "Fashion-MNIST"
    assert sorted(p.name for p in out.iterdir()) == sorted(FASHION_CLASSES)
    for path in out.rglob("*.png"):
        index = int(path.stem)
        assert path.parent.name == FASHION_CLASSES[labels[index]]
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images[index])


# --- files of arrays ----------------------------------------------------------------------------


def test_npz_channels_last_with_its_own_validation_arrays(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)  # N, H, W, C
    labels = np.arange(20) % 2
    val = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, images=images, labels=labels, val_images=val, val_labels=np.array([0, 1, 1, 1]))
    dm = TensorFileDataModule(str(path), test_fraction=0.2, batch_size=4)
    dm.setup()
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (2, 3, 6)
    assert torch.equal(dm.val_split.images, torch.from_numpy(val).permute(0, 3, 1, 2))
    assert dm.val_split.labels.tolist() == [0, 1, 1, 1]
    assert torch.bincount(dm.test_split.labels).tolist() == [2, 2]  # round(10 * 0.2) per class
    pool = torch.from_numpy(images).permute(0, 3, 1, 2)
    held = torch.cat([dm.train_split.images, dm.test_split.images])
    assert sorted(map(bytes, held.flatten(1).numpy())) == sorted(
        map(bytes, pool.flatten(1).numpy())
    )


def test_pt_floats_and_single_channel_arrays(tmp_path):
    floats = torch.rand(30, 1, 5, 5, dtype=torch.float64)
    path = tmp_path / "data.pt"
    torch.save({"images": floats, "labels": torch.arange(30) % 3}, path)
    dm = TensorFileDataModule(str(path), batch_size=4)
    dm.setup()
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (3, 1, 5)
    everything = torch.cat([dm.train_split.images, dm.val_split.images, dm.test_split.images])
    expected = (floats * 255).round().to(torch.uint8)
    assert sorted(map(bytes, everything.flatten(1).numpy())) == sorted(
        map(bytes, expected.flatten(1).numpy())
    )
    gray = tmp_path / "gray.npz"
    np.savez(gray, images=np.zeros((10, 4, 4), dtype=np.uint8), labels=np.arange(10) % 2)
    assert TensorFileDataModule(str(gray), val_fraction=0.2, test_fraction=0.2).in_channels == 1


BAD_ARRAYS = {
    "no labels": ({"images": np.zeros((4, 4, 4), np.uint8)}, "has no 'labels' (its keys: images)"),
    "floats above 1": (
        {"images": np.full((4, 4, 4), 2.0), "labels": np.arange(4) % 2},
        "'images' are floats in [2, 2]; expected [0, 1]",
    ),
    "not square": (
        {"images": np.zeros((4, 4, 6), np.uint8), "labels": np.arange(4) % 2},
        "the images are not square",
    ),
    "one class": (
        {"images": np.zeros((4, 4, 4), np.uint8), "labels": np.zeros(4, int)},
        "one class",
    ),
    "float labels": (
        {"images": np.zeros((4, 4, 4), np.uint8), "labels": np.zeros(4)},
        "'labels' must be integers [4]",
    ),
    "half a split": (
        {
            "images": np.zeros((4, 4, 4), np.uint8),
            "labels": np.arange(4) % 2,
            "val_images": np.zeros((1, 4, 4)),
        },
        "has no 'val_labels'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_array_files_stop_with_one_line(case, tmp_path):
    arrays, message = BAD_ARRAYS[case]
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    with pytest.raises(NasError, match=None) as error:
        TensorFileDataModule(str(path))
    assert message in str(error.value)


def test_a_missing_or_foreign_array_file_is_named(tmp_path):
    with pytest.raises(NasError, match="does not exist; pass a .pt or .npz file"):
        TensorFileDataModule(str(tmp_path / "absent.npz"))
    (tmp_path / "broken.pt").write_bytes(b"not a pickle")
    with pytest.raises(NasError, match="broken.pt' cannot be read"):
        TensorFileDataModule(str(tmp_path / "broken.pt"))


# --- configs and any DataModule -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OWN_DATA))
def test_config_lists_every_argument_with_its_default(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cls = OWN_DATA[name]
    assert cfg._target_ == f"nas.data.{cls.__name__}"
    params = inspect.signature(cls.__init__).parameters
    keys = [k for k in cfg if k != "_target_"]
    assert keys == [k for k in params if k != "self"]
    required = keys[0]  # root / path: no default, `???` in the YAML
    assert (
        OmegaConf.is_missing(cfg, required) and params[required].default is inspect.Parameter.empty
    )
    for key in keys[1:]:
        assert cfg[key] == params[key].default, key


class NoClassCount(L.LightningDataModule):
    """A user's DataModule that forgot `num_classes`."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.in_channels = 3
        self.batch_size = batch_size


def test_a_datamodule_without_num_classes_stops_train_py_with_one_line(tmp_path, capsys):
    import train
    from nas.cli import user_errors

    target = f"+dataset._target_={__name__}.{NoClassCount.__name__}"
    cfg = compose_config("train", ["~dataset", target], tmp_path)
    with pytest.raises(SystemExit) as stop, user_errors():
        train.train(cfg)
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: NoClassCount lacks num_classes, which every run needs: num_classes: the number of "
        "classes, an int >= 2 (the classifier's outputs) (docs/datasets.md; a "
        "nas.data.TensorImageDataModule subclass has them all)"
    ]
    assert not (tmp_path / "checkpoints").exists()


def test_scoring_needs_the_in_memory_validation_split():
    dm = NoClassCount()
    dm.num_classes = 4
    check_datamodule(dm)  # enough to train
    with pytest.raises(
        NasError, match="lacks val_split, normalize, eval_batch_size, which search.py needs"
    ):
        check_datamodule(dm, scoring=True)
    dm.num_classes = True
    with pytest.raises(NasError, match=r"NoClassCount.num_classes=True: expected an int >= 2"):
        check_datamodule(dm)


# --- the dataset record: a search scores on the folder the supernet was trained on ---------------


@pytest.mark.slow
def test_a_supernet_trained_on_a_folder_is_searched_on_it_without_naming_it(tmp_path):
    import search
    import train
    from nas.results.store import ResultsStore

    root = pooled(tmp_path / "data", per_class=(40, 40, 40), mode="RGB")
    run = tmp_path / "run"
    train.train(
        compose_config(
            "train",
            [
                "experiment=smoke",
                "dataset=image_folder",
                f"dataset.root={root}",
                "dataset.num_workers=0",
                "dataset.val_fraction=0.2",
                "dataset.test_fraction=0.2",
                "test_after_fit=false",
                "trainer.max_steps=1",  # what is recorded matters here, not what is learned
            ],
            run,
        )
    )
    ckpt = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "search"
    # no dataset named: the base config's digits (10 classes, 1 channel) could not score it
    search.run(
        compose_config(
            "search", [f"ckpt={ckpt}", f"out_dir={out}", "search.num_archs=3", "selection.k=1"], out
        )
    )
    with ResultsStore(out / "results.sqlite") as store:
        assert store.count() == 3
        setup = store.get_meta("evaluation")
    assert setup["dataset"]["_target_"] == "nas.data.ImageFolderDataModule"
    assert setup["dataset"]["root"] == str(root)
    assert setup["val_images"] == [24, 3, 8, 8]  # round(40 * 0.2) per class, RGB 8x8

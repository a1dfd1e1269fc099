"""DataModules: splits, sampler order, normalisation, augmentation, on-disk readers and their errors."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from nas.data import (
    DATAMODULES,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    EpochShuffleSampler,
    FashionMNISTDataModule,
    SyntheticDataModule,
    augment,
    read_idx,
)
from nas.errors import NasError

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
FASHION = Path("/usr/share/datasets/fashion-mnist")


# --- sampler, loaders, normalisation ------------------------------------------------------------


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(100, seed=3), EpochShuffleSampler(100, seed=3)
    first = list(a)
    assert sorted(first) == list(range(100))
    assert list(b) == first and list(a) == first  # same (seed, epoch): same order, every time
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(EpochShuffleSampler(100, seed=4)) != first


def test_loaders_batch_sizes_and_epoch_order():
    dm = SyntheticDataModule(
        train_size=100, val_size=50, test_size=30, batch_size=32, eval_batch_size=20
    )
    train = dm.train_dataloader()  # setup() happens on first use
    batches = list(train)
    assert [len(y) for _, y in batches] == [32, 32, 32]  # last partial batch dropped
    assert batches[0][0].dtype == torch.uint8 and batches[0][1].dtype == torch.int64
    assert [len(y) for _, y in dm.val_dataloader()] == [20, 20, 10]  # kept
    assert torch.equal(torch.cat([x for x, _ in dm.test_dataloader()]), dm.test_split.images)
    again = SyntheticDataModule(
        train_size=100, val_size=50, test_size=30, batch_size=32
    ).train_dataloader()
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(batches, again, strict=True))
    train.sampler.set_epoch(1)  # what Lightning calls at each epoch
    assert not torch.equal(next(iter(train))[0], batches[0][0])


def test_normalised_batches_have_zero_mean_unit_std():
    dm = SyntheticDataModule(train_size=512, batch_size=64)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    out, labels = dm.on_after_batch_transfer((x, y), 0)  # no trainer: no augmentation
    mean = torch.tensor(dm.mean).view(1, -1, 1, 1)
    std = torch.tensor(dm.std).view(1, -1, 1, 1)
    assert out.dtype == torch.float32 and labels is y
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std)
    everything = torch.cat([dm.on_after_batch_transfer(b, 0)[0] for b in dm.train_dataloader()])
    torch.testing.assert_close(everything.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(everything.std((0, 2, 3)), torch.ones(3), atol=1e-2, rtol=0)


def test_hook_augments_only_while_training():
    dm = SyntheticDataModule(pad=2, flip=True)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], dm.normalize(batch[0]))
    dm.trainer = SimpleNamespace(training=True)
    assert not torch.equal(dm.on_after_batch_transfer(batch, 0)[0], dm.normalize(batch[0]))


# --- augment() -----------------------------------------------------------------------------------


def _images(n=64, channels=3, size=6):
    return torch.randint(
        0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(0)
    ).to(torch.uint8)


def test_augment_without_pad_or_flip_is_identity():
    x = _images()
    assert torch.equal(augment(x, pad=0, flip=False), x)


def test_augment_flip_mirrors_exactly_the_chosen_examples():
    x = _images()
    out = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # each example is exactly one of the two
    assert 10 < int(mirrored.sum()) < 54  # and both happen (64 fair coins)
    again = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def _crops(image: torch.Tensor, pad: int, flip: bool) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every crop of the zero-padded `image` (and its mirror when `flip`), keyed by (dy, dx, mirror)."""
    size = image.shape[-1]
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    crops = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + size, dx : dx + size]
            crops[dy, dx, False] = crop
            if flip:
                crops[dy, dx, True] = crop.flip(-1)
    return crops


@pytest.mark.parametrize("flip", [False, True])
def test_augment_crop_equals_padded_slice(flip):
    x = _images()
    out = augment(x, pad=2, flip=flip, generator=torch.Generator().manual_seed(2))
    offsets = set()
    for i in range(len(x)):
        matches = [key for key, crop in _crops(x[i], 2, flip).items() if torch.equal(out[i], crop)]
        assert len(matches) == 1, f"example {i}: output is not exactly one padded crop"
        offsets.add(matches[0][:2])
    assert len(offsets) > 10  # offsets are drawn per example, not once per batch


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_and_normalise_on_cuda():
    x = _images().cuda()
    generator = torch.Generator(device="cuda").manual_seed(3)
    out = augment(x, pad=2, flip=True, generator=generator)
    assert out.device == x.device and out.dtype == torch.uint8
    for i in range(len(x)):
        crops = _crops(x[i].cpu(), 2, True).values()
        assert sum(torch.equal(out[i].cpu(), crop) for crop in crops) == 1
    dm = SyntheticDataModule(channels=3, image_size=6)
    dm.setup()
    torch.testing.assert_close(dm.normalize(x).cpu(), dm.normalize(x.cpu()))


# --- readers -------------------------------------------------------------------------------------


def _write_cifar(
    root: Path, cls, per_batch: int, seed: int = 0
) -> dict[str, tuple[np.ndarray, list]]:
    """A tiny archive in torchvision's real on-disk format; returns file name -> (rows, labels).

    The real files are Python 2 pickles whose str keys load as str under encoding="latin1"
    (torchvision reads entry["data"]), so str keys it is, not b"data".
    """
    rng = np.random.default_rng(seed)
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if cls is torchvision.datasets.CIFAR10 else "fine_labels"
    classes = 10 if cls is torchvision.datasets.CIFAR10 else 100
    written = {}
    for name, _ in cls.train_list + cls.test_list:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, per_batch).tolist()
        (folder / name).write_bytes(pickle.dumps({"data": rows, label_key: labels}, protocol=2))
        written[name] = (rows, labels)
    meta = {cls.meta["key"]: [f"class{i}" for i in range(classes)]}
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    return written


def _trust(monkeypatch, root: Path, cls) -> None:
    """Give torchvision's class the md5s of our files (its integrity check is md5 per file)."""

    def md5(name):
        return hashlib.md5((root / cls.base_folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


def _as_images(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows).view(-1, 3, 32, 32)


@pytest.mark.parametrize("module", [CIFAR10DataModule, CIFAR100DataModule])
def test_cifar_reads_real_format_and_splits_disjointly(tmp_path, monkeypatch, module):
    cls = module.DATASET
    written = _write_cifar(tmp_path, cls, per_batch=60 if module is CIFAR10DataModule else 300)
    _trust(monkeypatch, tmp_path, cls)
    dm = module(data_dir=str(tmp_path), val_size=50, download=False, batch_size=10)
    dm.setup()
    classes = 10 if module is CIFAR10DataModule else 100
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (classes, 3, 32)
    ((test_name, _),) = cls.test_list
    assert torch.equal(dm.test_split.images, _as_images(written[test_name][0]))
    assert dm.test_split.labels.tolist() == written[test_name][1]
    pool = {
        row.tobytes(): label
        for name, _ in cls.train_list
        for row, label in zip(written[name][0], written[name][1], strict=True)
    }
    assert (len(dm.train_split), len(dm.val_split)) == (250, 50)
    seen = {}
    for split in (dm.train_split, dm.val_split):
        for image, label in zip(split.images, split.labels.tolist(), strict=True):
            key = image.contiguous().numpy().tobytes()  # a pickled row is the image in CHW order
            assert pool[key] == label and key not in seen  # right label; train and val disjoint
            seen[key] = label
    assert len(seen) == len(pool)


def test_cifar_extracts_a_copied_archive(tmp_path, monkeypatch):
    cls = torchvision.datasets.CIFAR10
    staging = tmp_path / "staging"
    _write_cifar(staging, cls, per_batch=20)
    _trust(monkeypatch, staging, cls)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / cls.filename, "w:gz") as tar:
        tar.add(staging / cls.base_folder, arcname=cls.base_folder)
    dm = CIFAR10DataModule(data_dir=str(data_dir), val_size=10, download=False, batch_size=10)
    dm.setup()
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (90, 10, 20)


def test_cifar_missing_or_unverified_data_names_the_path(tmp_path):
    with pytest.raises(NasError, match=str(tmp_path / "empty")) as error:
        CIFAR10DataModule(data_dir=str(tmp_path / "empty"), download=False).setup()
    assert "cifar-10-python.tar.gz" in str(error.value) and "data_dir" in str(error.value)
    _write_cifar(tmp_path / "fake", torchvision.datasets.CIFAR10, per_batch=5)  # md5s not trusted
    with pytest.raises(NasError, match="checksums"):
        CIFAR10DataModule(data_dir=str(tmp_path / "fake"), download=False).setup()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
    return arrays


def test_read_idx_roundtrip_gz_and_plain(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx(array)))
    (tmp_path / "a").write_bytes(_idx(array))
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)
    assert np.array_equal(read_idx(tmp_path / "a"), array)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: gzip.compress(raw[:-7]),  # idx body shorter than its header says
        lambda raw: gzip.compress(raw)[:-20],  # gzip stream cut off
        lambda raw: gzip.compress(b"\x01\x02" + raw[2:]),  # bad magic
    ],
)
def test_read_idx_corrupt_file_names_it(tmp_path, corrupt):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(_idx(np.zeros((3, 28, 28), dtype=np.uint8))))
    with pytest.raises(NasError, match=str(path)):
        read_idx(path)


def test_fashion_mnist_reads_idx_directory(tmp_path):
    arrays = _write_fashion(tmp_path, n_train=40, n_test=12)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=8, batch_size=8)
    dm.setup()
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (32, 8, 12)
    assert torch.equal(
        dm.test_split.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
    )
    assert dm.test_split.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    train_ids = {
        img.numpy().tobytes() for img in torch.cat([dm.train_split.images, dm.val_split.images])
    }
    assert train_ids == {img.tobytes() for img in arrays["train-images-idx3-ubyte"][:, None]}


def test_fashion_mnist_missing_directory_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(NasError, match=str(missing)) as error:
        FashionMNISTDataModule(data_dir=str(missing)).setup()
    assert "apt-get install dataset-fashion-mnist" in str(error.value)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_package():
    dm = FashionMNISTDataModule()
    dm.setup()
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (55000, 5000, 10000)
    assert dm.train_split.images.shape[1:] == (1, 28, 28) and 0.2 < dm.mean[0] < 0.4


# --- digits, synthetic, configs, validation -------------------------------------------------------


@pytest.mark.parametrize("size", [8, 16])
def test_digits_offline(size):
    dm = DigitsDataModule(image_size=size)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, size)  # before setup
    dm.setup()
    assert (len(dm.train_split), len(dm.val_split), len(dm.test_split)) == (1197, 300, 300)
    assert dm.train_split.images.shape[1:] == (1, size, size)
    assert set(dm.train_split.labels.tolist()) == set(range(10))
    assert int(dm.train_split.images.max()) == 255


@pytest.mark.slow
def test_synthetic_is_learnable_with_lightning(monkeypatch):
    calls = []

    def counting_augment(images, pad, flip, generator=None):
        calls.append(len(images))
        return augment(images, pad, flip, generator)

    monkeypatch.setattr("nas.data.base.augment", counting_augment)

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(16, 10),
            )
            self.val_acc = []

        def training_step(self, batch, _):
            x, y = batch
            assert x.dtype == torch.float32  # the DataModule's hook ran
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.val_acc.append((self.net(x).argmax(1) == y).float().mean().item())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.02)

    torch.manual_seed(0)
    dm, model = SyntheticDataModule(), Tiny()  # 512 train examples: 8 batches of 64 per epoch
    trainer = L.Trainer(
        max_epochs=10,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.train_dataloader.sampler.epoch == 9  # Lightning advanced our sampler
    assert calls == [64] * 80  # augmentation on every training batch, never on validation ones
    assert model.val_acc[-1] > 0.9


@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_config_lists_every_argument_with_its_default(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cls = DATAMODULES[name]
    assert cfg._target_ == f"nas.data.{cls.__name__}"
    params = inspect.signature(cls.__init__).parameters
    keys = [k for k in cfg if k != "_target_"]
    assert keys == [k for k in params if k != "self"]
    for key in keys:
        if key != "data_dir":  # an interpolation in the YAML
            assert cfg[key] == params[key].default, key


def test_bad_values_are_named():
    with pytest.raises(NasError, match="batch_size=0"):
        SyntheticDataModule(batch_size=0)
    with pytest.raises(NasError, match="val_size=2000"):
        DigitsDataModule(val_size=2000).setup()
    with pytest.raises(NasError, match="train_subset=900"):
        SyntheticDataModule(train_subset=900).setup()
    with pytest.raises(NasError, match="batch_size=600"):
        SyntheticDataModule(batch_size=600).setup()
    with pytest.raises(NasError, match="call setup"):
        _ = SyntheticDataModule().mean


def test_cutout_zeroes_the_clipped_square_around_a_random_centre():
    from nas.data.batching import cutout

    images = torch.ones(500, 2, 32, 32)
    out = cutout(images, 16, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1)  # [N, H, W]: a pixel is cut in every channel or in none
    assert bool(((out == 0) == zeros.unsqueeze(1)).all())
    for mask in zeros:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert int(mask.sum()) == len(rows) * len(cols)  # one axis-aligned rectangle
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16  # clipped at the borders
        assert len(rows) == 16 or rows[0] == 0 or rows[-1] == 31
    full = [bool(m.sum() == 256) for m in zeros]
    assert 0.2 < sum(full) / len(full) < 0.4  # centre in [8, 24) on both axes: (16/32)^2


def test_bad_cutout_is_refused():
    from nas.data import CIFAR10DataModule

    with pytest.raises(NasError, match="cutout=-1"):
        CIFAR10DataModule(cutout=-1)

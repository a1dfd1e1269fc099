"""Write an image folder of PNGs, one folder per class, for `dataset=image_folder`.

    python scripts/make_image_folder.py <out_dir> --per-class 300

Images come from Fashion-MNIST's training set when it is installed (Debian's
dataset-fashion-mnist, /usr/share/datasets/fashion-mnist; 28x28 grayscale), else from
scikit-learn's bundled digits (8x8, at most 174 per class). Each class takes a seeded random
`--per-class` of its images; files are <out_dir>/<class>/<index>.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]


def source_images(source: str, fashion_dir: Path) -> tuple[str, np.ndarray, np.ndarray, list[str]]:
    """(name, uint8 images [N, H, W], labels [N], class names) of `source` (auto, fashion, digits)."""
    from nas.data.fashion_mnist import find_idx_files, read_idx

    files = find_idx_files(fashion_dir) if source in ("auto", "fashion") else None
    if files is not None:
        images, labels = read_idx(files["train_images"]), read_idx(files["train_labels"])
        return "Fashion-MNIST", images, labels.astype(np.int64), FASHION_CLASSES
    if source == "fashion":
        sys.exit(f"error: Fashion-MNIST not found in {fashion_dir}; pass --source digits")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    return "digits", images, digits.target.astype(np.int64), [str(d) for d in range(10)]


def write_folder(
    out: Path, per_class: int, source: str = "auto", seed: int = 0, fashion_dir: Path = FASHION
) -> str:
    """Write `per_class` PNGs of every class under `out`; returns the source's name."""
    name, images, labels, classes = source_images(source, fashion_dir)
    rng = np.random.default_rng(seed)
    for label, class_name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        if per_class > len(members):
            sys.exit(
                f"error: --per-class {per_class}: {name} has only {len(members)} images of class "
                f"{class_name!r}; pass at most {len(members)}"
            )
        folder = out / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index in sorted(rng.choice(members, per_class, replace=False)):
            Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (<out>/<class>/<index>.png)")
    parser.add_argument("--per-class", type=int, default=300, help="images per class")
    parser.add_argument("--source", choices=["auto", "fashion", "digits"], default="auto")
    parser.add_argument("--seed", type=int, default=0, help="which images each class takes")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION)
    args = parser.parse_args(argv)
    if args.per_class < 1:
        parser.error(f"--per-class {args.per_class}: expected >= 1")
    name = write_folder(args.out, args.per_class, args.source, args.seed, args.fashion_dir)
    print(f"wrote {args.per_class} {name} images per class to {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find `nas`
    main()

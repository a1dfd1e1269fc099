"""Classify images of a class-per-folder directory with an exported network, without `nas`.

    python scripts/predict_exported.py <export dir> <image folder> [--num 200]

Reads `manifest.json`, converts and resizes each image as training did (PIL: the channels of the
manifest, shorter side resized then centre-cropped), normalises it with the manifest's mean and
std, and runs both `network.pt2` (torch.export) and `network.onnx` (onnxruntime, when installed).
Prints each file's agreement with the folder's labels on `--num` seeded images and the largest
difference between the two files' logits. It imports only torch, numpy and PIL (and
onnxruntime): a check that the files work where this package is not installed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_image(path: Path, channels: int, size: int) -> np.ndarray:
    """[C, size, size] float32 in [0, 1]: converted, shorter side resized, centre-cropped."""
    image = Image.open(path).convert("L" if channels == 1 else "RGB")
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="the directory python -m nas.export wrote")
    parser.add_argument("images", type=Path, help="<dir>/<class>/<image files>")
    parser.add_argument("--num", type=int, default=200, help="images to classify")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    manifest = json.loads((args.export / "manifest.json").read_text())
    channels, size = manifest["input"]["channels"], manifest["input"]["height"]
    classes = manifest["output"]["class_names"] or sorted(
        p.name for p in args.images.iterdir() if p.is_dir()
    )
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((args.images / name).iterdir())
        if path.suffix.lower() in SUFFIXES
    ]
    chosen = random.Random(args.seed).sample(files, min(args.num, len(files)))
    mean = np.array(manifest["input"]["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(manifest["input"]["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    pixels = np.stack([load_image(path, channels, size) for path, _ in chosen])
    inputs = ((pixels - mean) / std).astype(np.float32)
    labels = np.array([label for _, label in chosen])

    network = torch.export.load(str(args.export / "network.pt2")).module()
    with torch.no_grad():
        logits = {"network.pt2": network(torch.from_numpy(inputs)).numpy()}
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime is not installed: network.onnx not run", file=sys.stderr)
    else:
        session = onnxruntime.InferenceSession(
            str(args.export / "network.onnx"), providers=["CPUExecutionProvider"]
        )
        logits["network.onnx"] = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    assert "nas" not in sys.modules, "the exported files must run without the nas package"
    for name, out in logits.items():
        agree = float((out.argmax(axis=1) == labels).mean())
        print(
            f"{name}: {agree:.1%} of {len(labels)} images of {args.images} labelled as their folder"
        )
    if len(logits) == 2:
        gap = float(np.abs(logits["network.pt2"] - logits["network.onnx"]).max())
        print(f"largest difference between the two files' logits: {gap:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

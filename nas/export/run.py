"""`export_checkpoint`: a stand-alone run's checkpoint in, a folder that needs only torch or
onnxruntime out (see docs/export.md for its files and how to load them).

Everything is written into a temporary folder beside `out`, checked there, and only then moved into
`out`: a failed export leaves `out` as it was. An `out` that holds anything is refused unless
`force`, which replaces the export's own files in it (and leaves any other file alone).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from nas.atomic import write_text
from nas.errors import check
from nas.export.artifacts import (
    ARCHITECTURE,
    INPUT_NAME,
    MANIFEST,
    ONNX,
    ONNX_OPSET,
    OUTPUT_NAME,
    PROGRAM,
    check_eval_network,
    check_exports,
    export_program,
    write_onnx,
    write_program,
)
from nas.export.inputs import input_spec, trained_dataset
from nas.export.restore import checkpoint_file, restore_classifier
from nas.spaces.interface import NETWORK_KEYS

FILES = (PROGRAM, ONNX, ARCHITECTURE, MANIFEST)
FORMAT = "oneshot-nas network export 1"


def check_out(out: Path, force: bool) -> None:
    """Stop before any work when `out` is a file, or a folder with something in it (unless
    `force`): nothing is overwritten without being asked."""
    if not out.exists():
        return
    check(out.is_dir(), f"--out {str(out)!r} is a file; pass a directory for the exported files")
    entries = sorted(p.name for p in out.iterdir())
    check(
        force or not entries,
        f"--out {str(out)!r} is not empty ({len(entries)} entries, e.g. {entries[:1]}); choose "
        "a new directory, or pass --force to replace the exported files in it",
    )


def export_checkpoint(
    ckpt: str | Path, out: str | Path, force: bool = False, module_class: str | None = None
) -> tuple[Path, dict]:
    """Export the network of checkpoint `ckpt` into `out`; (out, the manifest written there)."""
    out = Path(str(out)).expanduser()
    check_out(out, force)
    path = checkpoint_file(ckpt)
    module, raw, config = restore_classifier(path, module_class)
    dataset = trained_dataset(raw, config, path)
    spec = input_spec(dataset, module.hparams)
    shape = tuple(spec["input"]["shape"][1:])
    x, logits = check_eval_network(
        module, shape, spec["output"]["num_classes"], type(module).__name__
    )
    program = export_program(module, shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", suffix=".tmp", dir=out.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp's folder is private; `out` gets the usual mode
    try:
        write_program(program, staging / PROGRAM)
        write_onnx(module, shape, staging / ONNX)
        module.arch.save(staging / ARCHITECTURE)
        checked = check_exports(program, staging, x, logits)
        manifest = build_manifest(module, raw, path, dataset, spec, checked)
        write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        _move_into(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, manifest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)  # the whole folder at once
        return
    for name in FILES:
        os.replace(staging / name, out / name)


def build_manifest(
    module, raw: Mapping, path: Path, dataset: Mapping, spec: Mapping, checked: Mapping
) -> dict:
    """What a program using the files needs to know, and where they came from."""
    cls = type(module)
    hparams = dict(module.hparams)
    parameters = getattr(module, "num_params", None)
    return {
        "format": FORMAT,
        "files": {"torch_export": PROGRAM, "onnx": ONNX, "architecture": ARCHITECTURE},
        **spec,
        "onnx": {"opset": ONNX_OPSET, "input": INPUT_NAME, "output": OUTPUT_NAME},
        "network": {
            "module_class": f"{cls.__module__}.{cls.__qualname__}",
            "space": module.arch.space.name,
            "arch_id": module.arch.id,
            # DARTS's evaluation network counts without its auxiliary head, as DARTS reports
            "parameters": int(parameters or sum(p.numel() for p in module.parameters())),
            **{k: hparams[k] for k in NETWORK_KEYS if k in hparams},
        },
        "trained": {
            "checkpoint": str(path.resolve()),
            "epoch": raw.get("epoch"),
            "global_step": raw.get("global_step"),
            "dataset": dict(dataset),
        },
        "versions": {"torch": torch.__version__, **_versions("onnx", "onnxruntime")},
        "check": dict(checked),
    }


def _versions(*packages: str) -> dict:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found

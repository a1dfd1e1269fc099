"""`python -m nas.export --ckpt <stand-alone run's checkpoint> --out <dir> [--force]`.

The command's entry module is `nas/export/__main__.py`; it runs `main` here. Bad input stops with
one `error:` line and exit status 2, as every entry point of the package (docs/errors.md).
"""

from __future__ import annotations

import argparse
import sys

from nas.errors import NasError
from nas.export.artifacts import ONNX, ONNX_OPSET, PROGRAM


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas.export",
        description="Write a retrained network as a torch.export program and ONNX, with the "
        "architecture and the inputs' normalisation, to run without this package.",
    )
    parser.add_argument(
        "--ckpt", required=True, help="stand-alone run's checkpoint, or its run directory"
    )
    parser.add_argument("--out", required=True, help="directory for the exported files")
    parser.add_argument(
        "--force", action="store_true", help="replace the exported files in a non-empty --out"
    )
    parser.add_argument(
        "--module-class",
        help="the class that wrote the checkpoint (default: recorded in it, or the run's "
        ".hydra/config.yaml), e.g. nas.modules.StandaloneModule",
    )
    args = parser.parse_args(argv)
    from nas.export.run import export_checkpoint  # after parsing: --help stays instant

    try:
        out, manifest = export_checkpoint(args.ckpt, args.out, args.force, args.module_class)
    except NasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(
            f"error: cannot use {str(err.filename or args.out)!r}: {err.strerror or err}; "
            "check the path and its permissions (--out must be writable)",
            file=sys.stderr,
        )
        return 2
    check, shape = manifest["check"], manifest["input"]["shape"]
    print(
        f"exported {manifest['network']['module_class']} ({manifest['network']['space']} "
        f"{manifest['network']['arch_id']}, {manifest['network']['parameters']:,} parameters)"
    )
    mean, std = (", ".join(f"{v:.4f}" for v in manifest["input"][k]) for k in ("mean", "std"))
    print(
        f"  input {shape} float32, normalised with mean ({mean}) and std ({std}); output logits "
        f"of {manifest['output']['num_classes']} classes"
    )
    print(f"  {PROGRAM}: logits within {check[PROGRAM]:.2g} of the network")
    onnx_check = check[ONNX]
    onnx_text = f"within {onnx_check:.2g}" if isinstance(onnx_check, float) else onnx_check
    print(f"  {ONNX} (opset {ONNX_OPSET}): {onnx_text}")
    print(f"-> {out}/ ({', '.join(manifest['files'].values())}, manifest.json)")
    return 0

"""The exported files of a network: a `torch.export` program (.pt2) and an ONNX model, each checked.

Both take a float32 batch [N, C, H, W] (N free, C, H, W those of the training data) and return the
logits [N, classes]. The network is exported in eval mode, and checked to behave as a deployed
network must before anything is written: one tensor out (no auxiliary head), the same logits on
every call (no drop-path or dropout), and an example's logits independent of the rest of its batch
(batch norm with running statistics, never ghost batch statistics). The traced program must draw no
random numbers. Then the program and the ONNX file must give the network's logits on a batch of
another size than the one traced (so a batch size baked into the graph would show).

ONNX comes from torch's TorchScript-based exporter (`dynamo=False`), opset `ONNX_OPSET`: on torch
2.14 it exports every image space of this package to float32 precision and needs only the `onnx`
package, where the `torch.export`-based one also needs `onnxscript` and took longer on the same
networks (measured in docs/export.md). It is deprecated upstream; its notice is silenced here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from nas.errors import NasError, check

PROGRAM = "network.pt2"
ONNX = "network.onnx"
ARCHITECTURE = "architecture.json"
MANIFEST = "manifest.json"
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "logits"
TRACE_BATCH, CHECK_BATCH = 2, 3
TOLERANCE = 1e-4  # |exported - network| <= TOLERANCE * (1 + |network|), element-wise
# aten ops that draw random numbers: none may remain in a network exported for inference. The
# dropout ops stay in the traced graph in eval mode too, as no-ops: they count when their `train`
# argument (the third) is true.
DROPOUT_OPS = {"dropout", "native_dropout", "feature_dropout", "alpha_dropout"}
RANDOM_OPS = {
    "bernoulli",
    "bernoulli_",
    "rand",
    "rand_like",
    "randn",
    "randn_like",
    "randint",
    "randint_like",
    "randperm",
    "normal",
    "normal_",
    "uniform",
    "uniform_",
    "exponential_",
    "multinomial",
}


def example_batch(shape: tuple[int, int, int], size: int, seed: int) -> torch.Tensor:
    """`size` normalised-looking inputs (standard normal) of `shape` (C, H, W), from `seed`."""
    return torch.randn(size, *shape, generator=torch.Generator().manual_seed(seed))


def within_tolerance(exported: torch.Tensor, reference: torch.Tensor) -> bool:
    return bool(((exported - reference).abs() <= TOLERANCE * (1 + reference.abs())).all())


@torch.no_grad()
def check_eval_network(
    module, shape: tuple[int, int, int], num_classes: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stop unless `module` (in eval mode) is a deterministic per-example classifier; returns the
    batch of `CHECK_BATCH` inputs it was checked on and their logits (the exports' reference)."""
    x = example_batch(shape, CHECK_BATCH, seed=1)
    out = module(x)
    check(
        isinstance(out, torch.Tensor),
        f"{name} returns {type(out).__name__} in eval mode, not one logits tensor (an auxiliary "
        "head still on at evaluation?); its forward must return the logits alone in eval mode",
    )
    check(
        tuple(out.shape) == (CHECK_BATCH, num_classes),
        f"{name} returns shape {tuple(out.shape)} for {CHECK_BATCH} images, expected "
        f"({CHECK_BATCH}, {num_classes}) logits",
    )
    check(
        torch.equal(out, module(x)),
        f"{name} gives other logits on a second call in eval mode: it draws random numbers "
        "(drop-path or dropout still on); switch them off in eval mode",
    )
    check(
        within_tolerance(module(x[:1]), out[:1]),
        f"{name} gives an image other logits alone than in a batch in eval mode: its batch norm "
        "uses the batch's statistics (ghost batch norm, or no running statistics); a deployed "
        "network must normalise with running statistics",
    )
    return x, out


def export_program(module, shape: tuple[int, int, int]) -> torch.export.ExportedProgram:
    """The `torch.export` program of `module` with a free batch dimension; no random ops in it."""
    example = example_batch(shape, TRACE_BATCH, seed=0)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    drawn = sorted({_op_name(n.target) for n in program.graph.nodes if _draws_random(n)})
    check(
        not drawn,
        f"the exported graph draws random numbers ({', '.join(drawn)}): a training-only op "
        "(drop-path, dropout) stays on in eval mode; switch it off in eval mode",
    )
    return program


def _draws_random(node) -> bool:
    if node.op != "call_function":
        return False
    name = _op_name(node.target)
    if name in DROPOUT_OPS:
        return bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("train", True))
    return name in RANDOM_OPS


def _op_name(target) -> str:
    """'bernoulli' of aten.bernoulli.p (the op's name without its namespace and overload)."""
    parts = str(target).split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def write_program(program: torch.export.ExportedProgram, path: Path) -> None:
    torch.export.save(program, str(path))


def write_onnx(module, shape: tuple[int, int, int], path: Path) -> None:
    """`module` as ONNX (opset `ONNX_OPSET`): input `images` [batch, C, H, W], output `logits`."""
    try:
        import onnx  # noqa: F401  (the exporter writes the model with it)
    except ImportError:
        raise NasError(
            "ONNX export needs the onnx package: pip install -c constraints.txt -e '.[export]' "
            "(make setup installs it)"
        ) from None
    example = example_batch(shape, TRACE_BATCH, seed=0)
    batch = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        # Its tracer warns of every shape test it records as a constant; H and W are fixed and
        # `check_exports` runs the file at another batch size, so a wrong constant would show there.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1")  # a note, not a fault
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: batch, OUTPUT_NAME: batch},
            do_constant_folding=True,
        )


@torch.no_grad()
def check_exports(program, folder: Path, x: torch.Tensor, reference: torch.Tensor) -> dict:
    """Compare the logits of the exported program and of the written ONNX file on `x` (a batch of
    `CHECK_BATCH`, not the traced size) with the network's, `reference`; the largest differences,
    for the manifest.

    The program is run as traced (what `torch.export.save` serialises; loading the file back
    costs as much as the export itself, and the tests do it in a fresh process); the ONNX file,
    traced on its own, is read back from the disk."""
    found = {"batch": CHECK_BATCH, "tolerance": f"{TOLERANCE} * (1 + |logit|)"}
    found[PROGRAM] = _compare(program.module()(x), reference, PROGRAM)
    try:
        import onnxruntime
    except ImportError:  # optional: the files are still written, the manifest says so
        found[ONNX] = "not checked: onnxruntime is not installed"
        return found
    session = onnxruntime.InferenceSession(str(folder / ONNX), providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    found[ONNX] = _compare(logits, reference, ONNX)
    return found


def _compare(exported: torch.Tensor, reference: torch.Tensor, name: str) -> float:
    check(
        tuple(exported.shape) == tuple(reference.shape),
        f"{name} returns logits of shape {tuple(exported.shape)}, the network "
        f"{tuple(reference.shape)}; nothing was written",
    )
    largest = float((exported - reference).abs().max())
    check(
        within_tolerance(exported, reference),
        f"{name} does not reproduce the network: its logits differ by up to {largest:.3g} "
        f"(tolerance {TOLERANCE} x (1 + |logit|)); nothing was written",
    )
    return largest

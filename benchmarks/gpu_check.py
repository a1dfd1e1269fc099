"""One prepared GPU check: CUDA tests, throughput, a short real-data run, the targets.

    python benchmarks/gpu_check.py --out <dir> [--data <fashion-mnist dir>]   # on a GPU, < 8 min
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_smoke               # tiny, CPU, < 1 min

Writes <out>/report.md and <out>/report.json, rewritten after every measurement, so a run cut off
at its time limit still returns what finished. Every section and measurement has a time cap; a
failure (a `torch.compile` error, an out-of-memory) is recorded in its row, never fatal.

Fashion-MNIST for section 3 (otherwise synthetic 1x32x32 images stand in), once, on this machine:

    apt-get install -y dataset-fashion-mnist      # idx .gz files in /usr/share/datasets/fashion-mnist
    mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/

The device's python3 has torch, torchvision, lightning, torchmetrics and pytest but not hydra-core,
omegaconf or antlr4 (wandb is not needed: the check logs nothing). Their wheels, once, here:

    .venv/bin/python -m pip wheel --no-deps hydra-core==1.3.8 omegaconf==2.3.1 \
        antlr4-python3-runtime==4.9.3 -w benchmarks/wheels

Then the device call (the `run` tool of /work/.library/device/README.md), copy and paste:

    run(timeout_s=480, carry=["benchmarks/wheels", "data/fashion-mnist"], command=
      "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site
       benchmarks/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 &&
       python3 benchmarks/gpu_check.py --out $OUT --data data/fashion-mnist")

(the command on one line). Section caps: tests 90 s, throughput 230 s, real data 100 s: about 7
minutes with start-up, inside the 480 s limit and leaving device time for one rerun.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # nas/ and benchmarks/ without an install (the device has none)

import lightning as L  # noqa: E402
import torch  # noqa: E402

from benchmarks.gpu_check.report import Report  # noqa: E402
from benchmarks.gpu_check.runs import (  # noqa: E402
    FULL,
    SMOKE,
    build,
    compose_train,
    fit_steps,
    padded_to_32,
    release_memory,
    training_config,
    typical_architecture,
)
from benchmarks.gpu_check.timing import (  # noqa: E402
    TimeCapReached,
    finite_positive,
    median_seconds,
    peak_memory_mib,
    reset_peak_memory,
    time_cap,
)
from nas.config import device_of  # noqa: E402
from nas.errors import check  # noqa: E402
from nas.search.evaluator import OneShotEvaluator, default_batch_archs  # noqa: E402

CAPS = {"cuda_tests": 90, "throughput": 230, "real_data": 100}  # seconds per section
ITEM_CAP, COMPILE_CAP, MIN_ITEM = 40, 75, 3  # seconds per measurement; less left: skipped
CIFAR10_TRAIN = 50_000  # training images before an experiment's validation split is taken off
TARGETS = {"supernet_img_s": 8_000, "rank_minutes": 10, "standalone_img_s": 20_000}


class Budget:
    """What is left of one section's time cap."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def guarded(fn, budget: Budget, cap: float) -> dict:
    """fn()'s row, or a row that says why there is none (time cap, error); never raises."""
    left = budget.left()
    if left < MIN_ITEM:
        return {"error": "skipped: the section's time cap was reached"}
    try:
        with time_cap(min(cap, left)):
            return fn()
    except (Exception, TimeCapReached) as error:  # recorded: the next measurement still runs
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
    finally:
        release_memory()


# -- 1. CUDA tests ---------------------------------------------------------------------------------
def cuda_tests(budget: Budget) -> dict:
    """tests/test_gpu.py and every other `gpu`-marked test (the whole file is marked), in a
    subprocess: a CUDA fault there cannot take this process with it."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu"]
    command += ["tests/test_gpu.py", "tests"]
    shown = "pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests"
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=budget.left()
        )
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        summary, code = (lines[-1] if lines else done.stderr.strip()[-300:]), done.returncode
    except subprocess.TimeoutExpired:
        summary, code = f"timed out after {budget.seconds:.0f} s", None
    return {"command": shown, "returncode": code, "summary": summary}


# -- 2. Throughput ---------------------------------------------------------------------------------
def supernet_training(sizes, device, run_dir, filters, compile=False) -> dict:
    """cifar_oneshot's supernet steps (batch 1024, ghost 32) at path dropout's end rate r = 0.1,
    eager or with the supernet under `torch.compile`."""
    extra = [*_oneshot(sizes, filters), "sampler.schedule=constant", "sampler.rate=0.1"]
    cfg = training_config("cifar_oneshot", sizes, device, run_dir, sizes.steps, extra)
    row = fit_steps(cfg, sizes.warmup, compile_backend=sizes.compile_backend if compile else None)
    return {**row, "settings": _settings(cfg, ghost=True)}


def ranking(sizes, device, run_dir, batch_archs: int) -> dict:
    """Architectures per minute scored by OneShotEvaluator on `val_images` validation images."""
    cfg = training_config("cifar_oneshot", sizes, device, run_dir, 1, _oneshot(sizes))
    _, module = build(cfg)
    supernet = module.supernet.to(device)
    images = torch.randn(sizes.val_images, 3, sizes.image, sizes.image, device=device)
    labels = torch.randint(0, 10, (sizes.val_images,), device=device)
    autocast = device_of(cfg.trainer.accelerator, cfg.trainer.precision)[1]
    evaluator = OneShotEvaluator(
        supernet, images, labels, cfg.dataset.eval_batch_size, cfg.model.ghost_size,
        autocast_dtype=autocast, channels_last=device.type == "cpu",  # as search.py ranks
    )  # fmt: skip
    rng = random.Random(0)
    reset_peak_memory(device)
    seconds = median_seconds(
        lambda: evaluator.accuracies([supernet.space.sample(rng) for _ in range(batch_archs)]),
        device, warmup=1, repeats=sizes.rank_repeats,
    )  # fmt: skip
    settings = (
        f"F={cfg.model.filters}, {sizes.val_images:,} images of {sizes.image}x{sizes.image}, eval batch "
        f"{cfg.dataset.eval_batch_size}, ghost {cfg.model.ghost_size}, batch_archs={batch_archs}"
    )
    return {
        "rate": 60 * batch_archs / seconds, "unit": "archs/min", "step_ms": 1e3 * seconds,
        "peak_mib": peak_memory_mib(device), "settings": settings,
    }  # fmt: skip


def standalone(sizes, device, run_dir) -> dict:
    """cifar_standalone's training of one architecture's child (F=16, its batch of 128)."""
    extra = [f"model.filters={sizes.filters[0]}"]
    cfg = training_config("cifar_standalone", sizes, device, run_dir, sizes.steps, extra)
    from hydra.utils import instantiate

    arch = typical_architecture(instantiate(cfg.search_space))
    return {**fit_steps(cfg, sizes.warmup, arch=arch), "settings": _settings(cfg)}


def method_step(sizes, device, run_dir, experiment, *extra: str) -> dict:
    """One training step of a method's search (its experiment's own network and batch)."""
    cfg = training_config(experiment, sizes, device, run_dir, sizes.steps, extra)
    return {**fit_steps(cfg, sizes.warmup), "settings": _settings(cfg)}


def _oneshot(sizes, filters=None) -> list[str]:
    """Overrides of cifar_oneshot: width F (the targets' F unless given); smoke ghost batches of 8
    (its batch of 16 holds two)."""
    extra = [f"model.filters={filters or sizes.filters[0]}"]
    return extra + (["model.ghost_size=8"] if sizes.smoke else [])


def _settings(cfg, ghost=False) -> str:
    m, d = cfg.model, cfg.dataset
    text = f"F={m.filters}, {m.cells} cells, {d.image_size}x{d.image_size}, batch {d.batch_size}"
    return text + (f", ghost {m.ghost_size}, r={cfg.sampler.rate}" if ghost else "")


def throughput(sizes, device, run_dir, budget: Budget, publish) -> dict:
    rows: dict[str, dict] = {}
    plan = []
    for f in sizes.filters:
        plan.append((f"supernet F={f} eager", ITEM_CAP, supernet_training, (f,)))
        plan.append((f"supernet F={f} compile", COMPILE_CAP, supernet_training, (f, True)))
    auto = default_batch_archs(device)
    plan.append((f"ranking batch_archs={auto} (auto)", ITEM_CAP, ranking, (auto,)))
    if auto != 1:
        plan.append(("ranking batch_archs=1", ITEM_CAP, ranking, (1,)))
    plan.append(("stand-alone child", ITEM_CAP, standalone, ()))
    # a step count bounds these runs, not epochs: GDAS anneals its temperature over the steps
    for name, experiment, extra in (
        ("DARTS", "cifar_darts", ()),
        ("GDAS", "cifar_gdas", ("model.tau_schedule=step",)),
    ):
        plan.append((f"{name} step ({experiment})", ITEM_CAP, method_step, (experiment, *extra)))
    plan.append(("ENAS step (cifar_enas_micro)", ITEM_CAP, method_step, ("cifar_enas_micro",)))
    first = f"supernet F={sizes.filters[0]}"
    for name, cap, fn, args in plan:
        if name.endswith(" compile") and not name.startswith(first) and not _helps(rows, first):
            rows[name] = {"error": f"skipped: torch.compile did not help at {first[9:]}"}
            continue
        row = guarded(lambda fn=fn, args=args: fn(sizes, device, run_dir, *args), budget, cap)
        row.pop("losses", None)
        rows[name] = row
        publish({"rows": rows, "seconds": budget.elapsed(), "complete": False})
    return {"rows": rows, "seconds": budget.elapsed(), "complete": True}


def _helps(rows, prefix) -> bool:
    eager, compiled = rows[f"{prefix} eager"].get("rate"), rows[f"{prefix} compile"].get("rate")
    return bool(eager and compiled and compiled > eager)


# -- 3. Real data ----------------------------------------------------------------------------------
def real_data(sizes, device, run_dir, data_dir, budget: Budget, throughput_rows) -> dict:
    """cifar_oneshot on Fashion-MNIST padded to 32x32 for `real_steps` steps on `device`, the first
    `cpu_steps` again on the CPU: same weights, masks and batches (augmentation off, since the
    two devices' random streams differ), so the losses may differ by rounding alone."""
    if data_dir:
        check(Path(data_dir).is_dir(), f"--data {data_dir}: no such folder (see the docstring)")
        data = ["dataset=fashion_mnist", f"dataset.data_dir={Path(data_dir).resolve()}"]
        label = f"Fashion-MNIST from {data_dir}, padded 28x28 -> 32x32"
    else:
        data = ["dataset=synthetic", "dataset.channels=1", f"dataset.image_size={sizes.real_image}"]
        label = f"synthetic 1x{sizes.real_image}x{sizes.real_image} (no --data given)"
    data += ["dataset.pad=0", "dataset.flip=false"]

    def run_on(where, stop_after=None):
        steps = sizes.real_steps  # both runs: the same data, LR and dropout schedules
        cfg = training_config("cifar_oneshot", sizes, where, run_dir, steps, _oneshot(sizes), data)
        datamodule = build(cfg)[0]
        if data_dir:
            datamodule = padded_to_32(datamodule)
        warmup = min(sizes.warmup, (stop_after or steps) - 1)
        return cfg, fit_steps(cfg, warmup, datamodule=datamodule, stop_after=stop_after)

    result = {"data": label, "device": str(device), "steps": sizes.real_steps}
    try:
        with time_cap(budget.left() * 0.6):
            cfg, run = run_on(device)
        result.update(settings=_settings(cfg, ghost=True), precision=str(cfg.trainer.precision))
        result.update({k: run[k] for k in ("step_ms", "rate", "peak_mib")}, img_s=run["rate"])
        result["losses"] = [round(x, 6) for x in run["losses"][: sizes.cpu_steps]]
    except (Exception, TimeCapReached) as error:
        result.update(error=f"{type(error).__name__}: {error}"[:300], settings="-", losses=None)
    result.update(_tolerance(device, result.get("precision")))
    if result.get("losses"):
        try:
            with time_cap(max(budget.left(), 1)):
                cpu = run_on(torch.device("cpu"), sizes.cpu_steps)[1]["losses"]
            result["cpu_losses"] = [round(x, 6) for x in cpu]
            diffs = [
                abs(a - b) / max(abs(b), 1e-12) for a, b in zip(result["losses"], cpu, strict=False)
            ]
            result.update(compared=len(diffs), max_rel_diff=max(diffs))
            result["agree"] = max(diffs) <= result["tolerance"]
        except (Exception, TimeCapReached) as error:
            result["cpu_error"] = f"{type(error).__name__}: {error}"[:300]
    result["epochs"] = implied_epochs(run_dir, result, throughput_rows, sizes)
    result["seconds"] = budget.elapsed()
    return result


def _tolerance(device, precision) -> dict:
    """Relative tolerance on the first losses: rounding of the device's arithmetic, not drift."""
    if device.type == "cpu":
        return {"tolerance": 1e-5, "tolerance_why": "the same CPU arithmetic twice"}
    if precision and "bf16" in precision:
        return {"tolerance": 5e-2, "tolerance_why": "bf16 autocast (8-bit mantissa) vs float32"}
    return {"tolerance": 1e-2, "tolerance_why": "TF32 convolutions vs float32"}


def implied_epochs(run_dir, real, rows, sizes) -> dict:
    """Seconds per CIFAR-10 epoch of each experiment: its steps per epoch times a measured step
    (the supernet's from the real-data run; DARTS and ENAS from section 2, their own sizes)."""
    sources = {
        "cifar_oneshot": (real.get("step_ms"), "section 3 run"),
        "cifar_darts": (rows.get("DARTS step (cifar_darts)", {}).get("step_ms"), "DARTS step"),
        "cifar_enas_micro": (
            rows.get("ENAS step (cifar_enas_micro)", {}).get("step_ms"),
            "ENAS step (shared weights only: no controller phase)",
        ),
    }
    epochs = {}
    for name, (step_ms, source) in sources.items():
        cfg = compose_train(name, [], run_dir)
        batch, val = cfg.dataset.batch_size, cfg.dataset.val_size
        steps = (CIFAR10_TRAIN - val) // batch  # full batches only (drop_last)
        epochs[name] = {
            "batch_size": batch, "train_images": CIFAR10_TRAIN - val, "steps": steps,
            "step_ms": step_ms, "epoch_s": step_ms * steps / 1e3 if step_ms else None,
            "source": source + (" at smoke sizes" if sizes.smoke else ""),
        }  # fmt: skip
    return epochs


# -- 4. Targets ------------------------------------------------------------------------------------
def targets(sizes, device, rows) -> dict:
    """The issue's targets for one H100/H200 at F=16, each met or not."""
    supernet = _best(rows, f"supernet F={sizes.filters[0]} ")  # F=16 at full sizes
    per_min = _best(rows, "ranking ")
    minutes = 20_000 / per_min if per_min else None
    child = rows.get("stand-alone child", {}).get("rate")
    lines = [
        ("supernet training F=16 >= 8,000 img/s (best of eager and compiled)", supernet, "img/s",
         lambda v: v >= TARGETS["supernet_img_s"]),
        ("20,000 architectures x 5,000 images ranked in <= 10 min (best batch_archs)", minutes,
         "min", lambda v: v <= TARGETS["rank_minutes"]),
        ("stand-alone training F=16 >= 20,000 img/s", child, "img/s",
         lambda v: v >= TARGETS["standalone_img_s"]),
    ]  # fmt: skip
    return {"rows": [_target(sizes, device, *line) for line in lines], "seconds": 0.0}


def _best(rows, prefix) -> float | None:
    rates = [r["rate"] for n, r in rows.items() if n.startswith(prefix) and "rate" in r]
    return max(rates) if rates else None


def _target(sizes, device, text, measured, unit, meets) -> dict:
    if sizes.smoke:
        status = "n/a (cpu smoke)"
    elif device.type != "cuda":
        status = "n/a (no CUDA device)"
    elif not finite_positive(measured):
        status = "not measured (see section 2)"
    else:
        status = "met" if meets(measured) else "not met"
    return {"target": text, "measured": measured, "unit": unit, "status": status}


# -- the run ---------------------------------------------------------------------------------------
def header(device, smoke: bool, argv) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        hardware = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    else:
        hardware = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), no CUDA"
    return {
        "mode": "smoke: tiny sizes on the CPU" if smoke else "full sizes",
        "hardware": hardware, "torch": torch.__version__, "python": platform.python_version(),
        "lightning": L.__version__, "command": " ".join(["python", *argv]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of report.md/.json")
    parser.add_argument("--data", default=None, help="Fashion-MNIST idx(.gz) folder")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    torch.backends.cudnn.benchmark = True
    argv = sys.argv if argv is None else ["benchmarks/gpu_check.py", *argv]
    report = Report(args.out, header(device, args.smoke, argv))
    report.write()
    with tempfile.TemporaryDirectory() as run_dir:
        budget = Budget(CAPS["cuda_tests"])
        report.set("cuda_tests", {**cuda_tests(budget), "seconds": budget.elapsed()})
        budget = Budget(CAPS["throughput"])
        section = throughput(
            sizes, device, Path(run_dir), budget, lambda s: report.set("throughput", s)
        )
        report.set("throughput", section)
        budget = Budget(CAPS["real_data"])
        real = real_data(sizes, device, Path(run_dir), args.data, budget, section["rows"])
        report.set("real_data", real)
        report.set("targets", targets(sizes, device, section["rows"]))
    print((args.out / "report.md").read_text())
    return report.data


if __name__ == "__main__":
    main()

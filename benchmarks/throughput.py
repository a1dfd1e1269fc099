"""Throughput of supernet training, architecture ranking and stand-alone training.

    python benchmarks/throughput.py                 # on the GPU: F=16/32/64, the issue's sizes
    python benchmarks/throughput.py --smoke         # tiny sizes on the CPU (checks the script runs)

Each measurement runs the fast path (each path only on the ghost batches that use it; several
architectures per ranking pass) and the plain reference (dense masked sum; one architecture per pass)
and prints their ratio. Writes JSON (--json) and rewrites the results table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from nas.ghost_bn import EQUAL_SIZE_METHOD, EQUAL_SIZE_METHODS, ghost_normalize
from nas.samplers import PathDropout, UniformSampler
from nas.search.evaluator import (
    OneShotEvaluator,
    default_batch_archs,
    default_channels_last,
)
from nas.spaces.oneshot_cell import OneShotCellSpace

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(step, warmup: int, iters: int, device: torch.device) -> float:
    """Seconds per call of `step` after `warmup` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def supernet_training(
    space, filters, cells, batch, ghost, rate, device, dense, warmup, iters, size
):
    """Images per second of supernet training steps with path dropout at its end rate r."""
    net = space.build_supernet(filters=filters, cells=cells).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    dropout, gen = PathDropout(rate, "constant"), torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        masks = dropout.sample(space, batch // ghost, 1.0, gen)
        with _autocast(device):
            loss = F.cross_entropy(net(x, masks, ghost, dense=dense), y)
        loss = loss + 0.5e-4 * net.l2_penalty(masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / _timed(step, warmup, iters, device)


def ranking(
    space, filters, cells, val_size, eval_batch, ghost, archs_per_pass, device, dense, passes, size
):
    """Architectures per minute scored on a `val_size`-image validation split."""
    net = space.build_supernet(filters=filters, cells=cells).to(device).eval()
    images = torch.randn(val_size, 3, size, size, device=device)
    labels = torch.randint(0, 10, (val_size,), device=device)
    evaluator = OneShotEvaluator(
        net,
        images,
        labels,
        eval_batch,
        ghost,
        autocast_dtype=torch.bfloat16 if device.type == "cuda" else None,
        channels_last=not dense and default_channels_last(device),  # as search.py ranks
    )
    if dense:  # the plain reference: every path on every example, masks multiplied in
        evaluator.supernet = _Dense(net)
    rng = random.Random(0)
    seconds = _timed(
        lambda: evaluator.accuracies([space.sample(rng) for _ in range(archs_per_pass)]),
        1,
        passes,
        device,
    )
    return 60 * archs_per_pass / seconds


class _Dense(torch.nn.Module):
    """The supernet forced onto its dense reference path."""

    def __init__(self, net):
        super().__init__()
        self.net, self.space = net, net.space

    def forward(self, x, masks, ghost):
        return self.net(x, masks, ghost, dense=True)


def _sgd_step(module, loss_fn, device, weight_decay: float = 0.0):
    """A training step of `module` on the loss `loss_fn()`: forward, backward, Nesterov SGD."""
    opt = torch.optim.SGD(
        module.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=weight_decay
    )

    def step():
        with _autocast(device):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def single_path_vs_child(space, filters, cells, batch, device, warmup, iters, size, archs=4):
    """(supernet s/step, child s/step): SPOS steps (one architecture per batch, drawn by the uniform
    sampler) against the stand-alone ChildNet of the same architecture with the same weights.

    Both do forward, backward and an SGD step; the supernet adds its masked L2 and the child the
    same L2 as weight decay. Averaged over `archs` architectures drawn by the sampler; the
    supernet's time includes the sampler's draw of an architecture (timed on its own).
    """
    net = space.build_supernet(filters=filters, cells=cells).to(device).train()
    sampler, gen = UniformSampler(), torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    supernet_s = child_s = 0.0
    for _ in range(archs):
        weights = sampler.sample(space, 1, 0.0, gen)
        child = net.extract(space.decode(weights), copy_weights=True).train()
        steps = (
            _sgd_step(
                net,
                lambda w=weights: F.cross_entropy(net(x, w, batch), y) + 0.5e-4 * net.l2_penalty(w),
                device,
            ),
            _sgd_step(child, lambda c=child: F.cross_entropy(c(x), y), device, 1e-4),
        )
        for _ in range(2):  # interleaved, so drifts in machine speed hit both alike
            supernet_s += _timed(steps[0], warmup, iters, device)
            child_s += _timed(steps[1], warmup, iters, device)
    draw_s = _timed(lambda: sampler.sample(space, 1, 0.0, gen), 1, 100, device)
    return supernet_s / (2 * archs) + draw_s, child_s / (2 * archs)


def ghost_bn_methods(channels, size, batch, ghost, device, iters=50) -> dict[str, float]:
    """Microseconds of ghost normalisation per equal-size method: forward + backward (training)
    and forward alone (ranking)."""
    x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
    sizes = [ghost] * (batch // ghost)
    times = {}
    for method in EQUAL_SIZE_METHODS:

        def train(method=method):
            ghost_normalize(x, sizes, 1e-5, method).square().sum().backward()

        def rank(method=method):
            with torch.no_grad():
                ghost_normalize(x, sizes, 1e-5, method)

        times[f"{method} train"] = 1e6 * _timed(train, 5, iters, device)
        times[f"{method} rank"] = 1e6 * _timed(rank, 5, iters, device)
    return times


def standalone_training(space, filters, cells, batch, device, warmup, iters, size):
    """Images per second of stand-alone training of a typical architecture (2 ops per block)."""
    rng = random.Random(1)
    arch = next(
        a
        for a in iter(lambda: space.sample(rng), None)
        if all(len(a[f"block{i}/ops"]) == 2 for i in range(space.num_blocks))
    )
    net = space.build_child(arch, filters=filters, cells=cells).to(device).train()
    net = net.to(memory_format=torch.channels_last) if device.type == "cuda" else net
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size, device=device)
    x = x.to(memory_format=torch.channels_last) if device.type == "cuda" else x
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with _autocast(device):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / _timed(step, warmup, iters, device)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, CPU-friendly")
    parser.add_argument("--filters", type=int, nargs="+", default=None)
    parser.add_argument(
        "--json",
        default=None,
        help="write results here (default: benchmarks/results-<device>.json)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    space = OneShotCellSpace()
    if args.smoke:
        cfg = dict(
            filters=args.filters or [4],
            cells=3,
            size=16,
            batch=32,
            ghost=8,
            val=64,
            eval_batch=64,
            pack=default_batch_archs(device),
            warmup=2,
            iters=10,
            passes=3,
        )
    else:
        cfg = dict(
            filters=args.filters or [16, 32, 64],
            cells=6,
            size=32,
            batch=1024,
            ghost=32,
            val=5000,
            eval_batch=1000,
            pack=default_batch_archs(device),
            warmup=3,
            iters=10,
            passes=3,
        )
    rows = []
    for f in cfg["filters"]:
        row = {"filters": f}
        if cfg["pack"] > 1:  # packing is the default here: show that it beats one per pass
            row["rank_arch_min_one_per_pass"] = ranking(
                space, f, cfg["cells"], cfg["val"], cfg["eval_batch"], cfg["ghost"], 1, device,
                False, cfg["passes"], cfg["size"],
            )  # fmt: skip
        for label, dense in (("fast", False), ("plain", True)):
            row[f"train_img_s_{label}"] = supernet_training(
                space,
                f,
                cfg["cells"],
                cfg["batch"],
                cfg["ghost"],
                0.1,
                device,
                dense,
                cfg["warmup"],
                cfg["iters"],
                cfg["size"],
            )
            row[f"rank_arch_min_{label}"] = ranking(
                space,
                f,
                cfg["cells"],
                cfg["val"],
                cfg["eval_batch"],
                cfg["ghost"],
                1 if dense else cfg["pack"],
                device,
                dense,
                cfg["passes"],
                cfg["size"],
            )
        row["standalone_img_s"] = standalone_training(
            space,
            f,
            cfg["cells"],
            min(cfg["batch"], 256),
            device,
            cfg["warmup"],
            cfg["iters"],
            cfg["size"],
        )
        supernet_s, child_s = single_path_vs_child(
            space,
            f,
            cfg["cells"],
            cfg["batch"],
            device,
            cfg["warmup"],
            cfg["iters"],
            cfg["size"],
        )
        row["single_path_ms"], row["child_ms"] = 1e3 * supernet_s, 1e3 * child_s
        row["single_path_ratio"] = supernet_s / child_s
        bn = ghost_bn_methods(f, cfg["size"], cfg["batch"], cfg["ghost"], device)
        row["ghost_bn_us"] = bn
        row["ghost_bn_choice"] = EQUAL_SIZE_METHOD.get(device.type, "var_mean")
        row["train_speedup"] = row["train_img_s_fast"] / row["train_img_s_plain"]
        row["rank_speedup"] = row["rank_arch_min_fast"] / row["rank_arch_min_plain"]
        row["minutes_for_20000"] = 20000 / row["rank_arch_min_fast"]
        rows.append(row)
        print(
            json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
    result = {
        "date": datetime.date.today().isoformat(),
        "device": _device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "smoke": args.smoke,
        "settings": cfg,
        "rows": rows,
    }
    out = Path(
        args.json
        or ROOT / "benchmarks" / f"results-{device.type}{'-smoke' if args.smoke else ''}.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_docs:
        _update_docs(result)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _update_docs(result: dict) -> None:
    """Replace this device kind's section of docs/benchmarks.md with the new table."""
    docs = ROOT / "docs" / "benchmarks.md"
    text = (
        docs.read_text()
        if docs.exists()
        else "# Benchmarks\n\nWritten by `python benchmarks/throughput.py`.\n"
    )
    s = result["settings"]
    title = f"## {result['device']}{' (smoke sizes)' if result['smoke'] else ''}"
    lines = [
        title,
        "",
        f"{result['date']}, torch {result['torch']}, Python {result['python']}; cells={s['cells']}, "
        f"{s['size']}x{s['size']} inputs, training batch {s['batch']} in ghost batches of {s['ghost']} at r=0.1; "
        f"ranking on {s['val']} validation images, {s['pack']} architectures per pass (plain: 1, dense).",
        "",
        "| F | train img/s (fast) | train img/s (plain) | speed-up | rank archs/min (fast) | (plain) | speed-up "
        "| min for 20k archs | stand-alone img/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['filters']} | {r['train_img_s_fast']:,.0f} | {r['train_img_s_plain']:,.0f} | "
            f"{r['train_speedup']:.2f}x | {r['rank_arch_min_fast']:,.0f} | {r['rank_arch_min_plain']:,.0f} | "
            f"{r['rank_speedup']:.2f}x | {r['minutes_for_20000']:,.1f} | {r['standalone_img_s']:,.0f} |"
        )
    lines += [
        "",
        "Machinery cost: a single-path step (one architecture per batch, the uniform sampler's draw "
        "included) against the stand-alone ChildNet step of the same architecture and weights.",
        "",
        "| F | single-path step (ms) | ChildNet step (ms) | ratio | rank archs/min, 1 per pass |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        one = r.get("rank_arch_min_one_per_pass", r["rank_arch_min_fast"])
        lines.append(
            f"| {r['filters']} | {r['single_path_ms']:.1f} | {r['child_ms']:.1f} | "
            f"{r['single_path_ratio']:.2f}x | {one:,.0f} |"
        )
    methods = list(EQUAL_SIZE_METHODS)
    lines += [
        "",
        "Ghost batch norm of equal ghost batches (training shapes, µs): forward + backward / forward "
        "alone, per exact method; `chosen` is this device's default (`nas/ghost_bn.py`).",
        "",
        "| F | " + " | ".join(methods) + " | chosen |",
        "|---:|" + "---:|" * len(methods) + "---|",
    ]
    for r in result["rows"]:
        t = r["ghost_bn_us"]
        cells = [f"{t[m + ' train']:,.0f} / {t[m + ' rank']:,.0f}" for m in methods]
        lines.append(f"| {r['filters']} | " + " | ".join(cells) + f" | {r['ghost_bn_choice']} |")
    section = "\n".join(lines) + "\n"
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    docs.write_text(text)


if __name__ == "__main__":
    main()

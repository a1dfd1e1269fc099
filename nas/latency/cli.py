"""`python -m nas.latency build | validate`: measure a latency table, then check its predictions.

  python -m nas.latency build --device cpu --space oneshot_cell --out table.json experiment=quickstart
  python -m nas.latency validate --table table.json --num 20

The network is composed as train.py composes it (conf/train.yaml): `--space` chooses the
search_space config, and the overrides after it (experiment=..., model.filters=..., dataset=...)
the network settings and the input shape, so the table matches the supernet they train.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from nas.errors import NasError, check
from nas.latency.build import build_table
from nas.latency.table import LatencyTable
from nas.latency.validate import validate

CONF = Path(__file__).resolve().parents[2] / "conf"


def network_of_config(space_name: str, overrides: list[str]):
    """(space, network settings, input shape) of conf/train.yaml with `search_space=space_name`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    known = sorted(p.stem for p in (CONF / "search_space").glob("*.yaml"))
    check(
        space_name in known,
        f"--space {space_name!r} is not a search space config; choose one of {known}",
    )
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"search_space={space_name}", *overrides])
    space = instantiate(cfg.search_space)
    data = instantiate(cfg.dataset)
    check(
        hasattr(data, "image_size"),
        f"--space {space_name}: dataset {type(data).__name__} gives no image_size; latency "
        "tables are for image spaces (pass an image dataset, e.g. dataset=cifar10)",
    )
    model = OmegaConf.to_container(cfg.model, resolve=True)
    lacking = [k for k in ("filters", "cells", "stages") if k not in model]
    check(not lacking, f"model config has no {lacking}; pass model=<a supernet method>")
    network = {k: model[k] for k in ("filters", "cells", "stages")}
    network.update(num_classes=data.num_classes, in_channels=data.in_channels)
    return space, network, (data.in_channels, data.image_size, data.image_size)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            return _build(args)
        return _validate(args)
    except NasError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _build(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    space, network, shape = network_of_config(args.space, args.overrides)
    out = Path(args.out or f"latency-{args.space}-{args.device}.json")
    print(f"measuring {space.name} {network} input {list(shape)} on {args.device}", file=sys.stderr)
    table = build_table(
        space,
        network,
        shape,
        args.device,
        args.batch_size,
        args.warmup,
        args.repeats,
        args.seed,
        log=lambda line: print(line, file=sys.stderr),
    )
    table.save(out)
    print(
        f"{len(table.ops)} path(s) timed in {table.info['children_measured']} children; "
        f"fixed part {table.fixed_ms:.3f} ms -> {out}"
    )
    return 0


def _validate(args) -> int:
    table = LatencyTable.load(args.table)
    report = validate(table, args.num, args.seed, args.warmup, args.repeats)
    for row in report["rows"]:
        print(
            f"{row['arch_id']}  predicted {row['predicted_ms']:8.3f} ms  measured {row['measured_ms']:8.3f} ms"
        )
    info = table.info
    print(
        f"{report['num']} children on {info.get('device')} ({info.get('gpu') or info.get('cpu')}, "
        f"{info.get('threads')} threads, batch {table.batch_size}): Pearson r "
        f"{report['pearson']:.3f}, Spearman rho {report['spearman']:.3f}, mean relative error "
        f"{report['mean_relative_error']:.1%} (median measured {report['median_measured_ms']:.3f} ms)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nas.latency", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="measure a latency table")
    build.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    build.add_argument("--space", required=True, help="a conf/search_space/<name>.yaml")
    build.add_argument("--out", help="table file (default: latency-<space>-<device>.json)")
    build.add_argument("--batch-size", type=int, default=1, help="images per pass (1: as deployed)")
    build.add_argument("--warmup", type=int, default=10, help="passes before timing")
    build.add_argument("--repeats", type=int, default=30, help="timed passes (median taken)")
    build.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("overrides", nargs="*", help="config overrides, e.g. experiment=quickstart")
    check_ = commands.add_parser("validate", help="predicted vs measured end-to-end latency")
    check_.add_argument("--table", required=True)
    check_.add_argument("--num", type=int, default=20, help="random children measured")
    check_.add_argument("--seed", type=int, default=1)
    check_.add_argument("--warmup", type=int, help="default: the table's")
    check_.add_argument("--repeats", type=int, help="default: the table's")
    check_.add_argument("--out", help="also write the report as JSON")
    return parser

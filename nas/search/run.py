"""A whole search: score architectures into the results store, then rank, plot and select."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nas.data.base import fixed_train_examples
from nas.errors import NasError, check
from nas.latency import LatencyTable
from nas.results.complexity import SizeTable
from nas.results.outputs import console
from nas.results.store import ResultsStore
from nas.search.budget import TRIES, Budget, budgeted, check_limits
from nas.search.checkpoint import checkpoint_paths
from nas.search.driver import check_shard, replay_or_evaluate, score_shard
from nas.search.evaluator import (
    OneShotEvaluator,
    default_batch_archs,
    default_channels_last,
)
from nas.search.setup import check_setup, differences, evaluation_setup
from nas.search.shards import shard_dir, shard_share
from nas.search.strategies import build_strategy, strategy_name, strategy_settings
from nas.spaces.interface import network_of


def search(
    module,
    datamodule,
    out_dir: str,
    checkpoint: str,
    device: torch.device,
    strategy: Mapping | None = None,
    num_archs: int = 20000,
    seed: int = 0,
    batch_archs: int | str = "auto",
    eval_batch_size: int | None = None,
    eval_ghost_size: int | None = None,
    bn_recalibration_batches: int = 0,
    autocast_dtype: torch.dtype | None = None,
    shard: int = 0,
    num_shards: int = 1,
    dataset: Mapping | None = None,
    max_params: float | None = None,
    max_macs: float | None = None,
    max_latency_ms: float | None = None,
    latency_table: str | None = None,
    budget_tries: int = TRIES,
) -> ResultsStore:
    """Score `num_archs` distinct architectures into `<out_dir>/results.sqlite` (resumable).

    shard, num_shards: with num_shards > 1, score only shard `shard` of the stream (random search),
    into `<out_dir>/shards/shard-<shard>-of-<num_shards>/results.sqlite`; `nas.search.merge`
    joins the shards' stores into `<out_dir>/results.sqlite` (docs/scaling.md).

    module: what `nas.search.checkpoint.load_for_search` restored: a method's trained module, or
    what its method searches as one (e.g. few-shot's sub-supernets); its `scorer` makes the
    evaluator from the one-shot evaluator of each trained supernet (method protocol).
    strategy: the `strategy` config (`_target_` and settings; None: random search).
    dataset: the dataset config `datamodule` was built from, recorded with the checkpoint's
    contents as the store's evaluation setup (`nas.search.setup`).

    batch_archs: architectures per pass ("auto": what pays on `device`, see `default_batch_archs`).
    bn_recalibration_batches: 0 scores with per-ghost-batch statistics (the paper's); N > 0 scores
    each architecture's child with BN statistics re-estimated on N fixed training batches (SPOS).
    max_params, max_macs, max_latency_ms: the budget (None: no limit); architectures over it are
    not scored, only counted (`nas.search.budget`). latency_table: a `python -m nas.latency build`
    table of this network, for max_latency_ms and the outputs' latency column.
    """
    strategy = dict(strategy or {"_target_": "nas.search.strategies.RandomSearch"})
    space, h = module.space, module.hparams
    datamodule.setup("validate")
    check(
        (datamodule.num_classes, datamodule.in_channels) == (h.num_classes, h.in_channels),
        f"the dataset has {datamodule.num_classes} classes and {datamodule.in_channels} channel(s), but the "
        f"checkpoint's supernet was trained for {h.num_classes} and {h.in_channels}; pass the experiment "
        "or dataset the checkpoint was trained on",
    )
    batch = eval_batch_size or datamodule.eval_batch_size
    ghost = eval_ghost_size or module.eval_ghost_size
    check(
        batch >= 1 and ghost >= 1,
        f"search.eval_batch_size={batch} and eval_ghost_size={ghost} must be >= 1",
    )
    if batch_archs in ("auto", None):
        batch_archs = default_batch_archs(device)
    check(
        isinstance(bn_recalibration_batches, int) and bn_recalibration_batches >= 0,
        f"search.bn_recalibration_batches={bn_recalibration_batches!r} must be an integer >= 0 "
        "(0: per-ghost-batch statistics, the paper's; SPOS re-estimates BN on ~20 batches)",
    )
    val = datamodule.val_split
    images = datamodule.normalize(val.images.to(device))
    network = network_of(h)
    sizes = SizeTable(space, network, tuple(val.images.shape[1:]))
    table = None
    if latency_table is not None:
        table = LatencyTable.load(latency_table)
        source = f"checkpoint {checkpoint}" if checkpoint else "this search's network"
        table.check_matches(space, network, val.images.shape[1:], source)
    limits = check_limits(max_params, max_macs, max_latency_ms)
    budget = Budget(limits, sizes, table.predict if table is not None else None)
    labels = val.labels.to(device)
    setup = evaluation_setup(checkpoint_paths(checkpoint) if checkpoint else [], dataset, val)
    recalibration = _recalibration_batches(datamodule, bn_recalibration_batches, device)

    def evaluator_of(trained) -> OneShotEvaluator:
        return OneShotEvaluator(
            trained.supernet,
            images,
            labels,
            batch,
            ghost,
            sizes,
            autocast_dtype,
            recalibration,
            channels_last=default_channels_last(device),
        )

    evaluator = module.scorer(evaluator_of)
    setup.update(getattr(evaluator, "setup", {}))  # what else its scores depend on (a proxy's)
    recorded = str(Path(checkpoint).resolve()) if checkpoint else None  # a proxy's may have none
    # Built first: a bad strategy setting must not leave a new results store behind.
    chosen = budgeted(
        lambda s: build_strategy(strategy, s, random.Random(seed), module),
        space,
        budget,
        budget_tries,
    )
    name = strategy_name(strategy)
    check_shard(shard, num_shards, num_archs)
    check(
        num_shards == 1 or not chosen.uses_scores,
        f"search.num_shards={num_shards} with strategy={name}: {name} proposes from the "
        "scores of earlier proposals, so shards cannot split its stream without changing the search; "
        "use strategy=random for shards, or one process (docs/scaling.md)",
    )
    store = ResultsStore(
        Path(shard_dir(out_dir, shard, num_shards)) / "results.sqlite",
        space=space,
        checkpoint=recorded,
    )
    settings = {
        "strategy": name,
        "seed": seed,
        "eval_batch_size": batch,
        "eval_ghost_size": ghost,
        "strategy_kwargs": strategy_settings(strategy),
        "batch_archs": batch_archs,
    }
    if bn_recalibration_batches:  # only when used: stores of earlier searches continue as they were
        settings["bn_recalibration_batches"] = bn_recalibration_batches
    if num_shards > 1:  # likewise; the merge checks that every shard has the same other settings
        settings.update(shard=shard, num_shards=num_shards)
    if budget.limits:  # likewise: another budget is another search
        settings["budget"] = budget.report()["limits"]
        if "latency_ms" in budget.limits:  # the table decides what fits: the same table's contents
            settings["budget"]["latency_table"] = table.content_hash
    previous = store.get_meta("settings")
    if previous and previous.get("strategy") == name:
        # Stores may list only the settings given then; a default left out is the same search.
        target = {"_target_": strategy["_target_"], **(previous.get("strategy_kwargs") or {})}
        kwargs = strategy_settings(target)
        previous = {**previous, "strategy_kwargs": kwargs}
    if previous not in (None, settings):
        store.close()
        raise NasError(
            f"results store {store.path} was filled with settings {previous}, not {settings} "
            f"({'; '.join(differences(previous, settings))}); "
            "use the same settings to continue it, or another out_dir"
        )
    store.set_meta("settings", settings)
    check_setup(store, setup, console.print)
    if table is not None:  # the outputs' latency column reads it from here
        store.set_meta("latency_table", {"path": table.info["path"], "hash": table.content_hash})
    if num_shards > 1:  # the merge checks that every shard reached the same stream length
        store.set_meta("num_archs", num_archs)
    fields = {
        "checkpoint": recorded,
        "eval_batch_size": batch,
        "eval_ghost_size": ghost,
    }
    start, before = time.perf_counter(), store.count()
    with _progress() as progress:
        task = progress.add_task("scoring", total=shard_share(num_archs, shard, num_shards))

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done)

        if num_shards == 1:
            summary = replay_or_evaluate(
                chosen, store, num_archs, evaluator, batch_archs, report, fields
            )
        else:
            summary = score_shard(
                chosen, store, num_archs, evaluator, shard, num_shards, batch_archs, report, fields
            )
    seconds = time.perf_counter() - start
    if budget.limits:
        store.set_meta("budget", budget.report())
        console.print(
            f"budget {budget.describe()}: {budget.rejected:,} proposal(s) over budget were not "
            f"scored ({_by_limit(budget)}); every scored architecture is within it"
        )
    console.print(
        f"scored {summary.evaluated} new architecture(s) in {seconds:.1f} s "
        f"({summary.evaluated / max(seconds, 1e-9):.1f}/s), reused {summary.replayed} stored "
        f"(store had {before}, now {store.count()}) -> {store.path}"
    )
    if hasattr(evaluator, "record_cost"):  # a scorer that times itself (a proxy) keeps its cost
        console.print(evaluator.record_cost(store))
    return store


def _by_limit(budget: Budget) -> str:
    counts = budget.report()["over_budget_by_limit"]
    return ", ".join(f"{k} {n:,}" for k, n in counts.items()) or "none drawn"


def _recalibration_batches(datamodule, batches: int, device) -> list[torch.Tensor]:
    """`batches` fixed, un-augmented training batches of the training batch size, on `device`."""
    if not batches:
        return []
    datamodule.setup("fit")  # the training split (loaded once)
    size = datamodule.batch_size
    available = len(datamodule.train_split)
    check(
        batches * size <= available,
        f"search.bn_recalibration_batches={batches} needs {batches * size:,} training images "
        f"(batches of dataset.batch_size={size}), but the training split has {available:,}; "
        f"lower it to at most {available // size}",
    )
    images = fixed_train_examples(datamodule, batches * size, seed=0)
    return list(images.to(device).split(size))


class _Rate(ProgressColumn):
    """Architectures scored per second (rich's own speed estimate)."""

    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.1f} archs/s")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]search"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        console=console,
    )

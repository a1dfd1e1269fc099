"""The search loop: ask a strategy, score new architectures, store each result, replay stored ones.

Resuming is replay. The loop runs in rounds of `batch_archs` distinct new proposals, and the structure
of a round (what is asked, then what is told, in which order) never depends on what the store already
holds. Stored architectures are told their stored score instead of being evaluated again, so a run that
was killed and restarted on the same store asks, evaluates and stores exactly what an uninterrupted run
would have, provided the strategy's seed is the same.

We score `num_archs` *distinct* architectures, as the paper does: a proposal already seen in this run
does not count and is not evaluated again; it is told its known score (so evolution's population sees
it, as in Real et al.) and the strategy is asked again.

Sharding (`score_shard`): a strategy that ignores scores (random search) has a stream of distinct
proposals fixed by its seed; shard i of n scores the positions k = i (mod n) of that stream and stores
each with seq = k, so the shards' stores together hold exactly the single-process store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from nas.errors import check
from nas.results.store import ResultsStore
from nas.search.strategies import Strategy
from nas.spaces.base import Architecture

EvaluateFn = Callable[[Sequence[Architecture]], Sequence[Mapping]]
_IDENTITY = ("arch", "arch_id", "arch_json", "seq")
MAX_REDRAWS = 100_000  # consecutive repeated proposals before we give up on finding a new one


@dataclass
class SearchSummary:
    """What a search run did: the distinct architectures in proposal order, with their scores."""

    history: list[tuple[Architecture, float]] = field(default_factory=list)
    evaluated: int = 0  # architectures scored by evaluate_fn in this run
    replayed: int = 0  # architectures whose stored score was reused
    repeats: int = 0  # proposals of an architecture already seen in this run (not counted)


def replay_or_evaluate(
    strategy: Strategy,
    store: ResultsStore,
    num_archs: int,
    evaluate_fn: EvaluateFn,
    batch_archs: int = 1,
    on_result: Callable[[int, int], None] | None = None,
    row_fields: Mapping | None = None,
    max_redraws: int = MAX_REDRAWS,
) -> SearchSummary:
    """Score `num_archs` distinct architectures proposed by `strategy`, storing each as it arrives.

    `evaluate_fn(archs)` returns one dict per architecture with `oneshot_acc` (and optionally `params`,
    `macs`, ...); `row_fields` adds constant columns (checkpoint, eval sizes) to every stored row.
    With `batch_archs > 1`, that many distinct proposals are asked before any is told: random search
    is unaffected; evolution becomes asynchronous evolution (parents come from the population told
    so far), which Real et al. also use. `on_result(n_done, num_archs)` is called after every
    architecture, replayed or evaluated, to drive a progress bar.
    """
    _check_sizes(strategy.space, num_archs, batch_archs)
    summary = SearchSummary()
    scores: dict[str, float] = {}  # arch id -> score, for every architecture of this run
    while len(summary.history) < num_archs:
        want = min(batch_archs, num_archs - len(summary.history))
        asked, fresh = _ask_round(strategy, want, scores, max_redraws)
        summary.repeats += len(asked) - len(fresh)
        stored = {a.id: store.get(a.id) for a in fresh}
        todo = [a for a in fresh if stored[a.id] is None]
        # seq = place in the run's stream of distinct architectures, whatever the store holds
        seqs = {a.id: len(summary.history) + i for i, a in enumerate(fresh)}
        new_scores = _evaluate(store, todo, evaluate_fn, row_fields, seqs) if todo else {}
        for arch in fresh:
            row = stored[arch.id]
            scores[arch.id] = row["oneshot_acc"] if row is not None else new_scores[arch.id]
            summary.history.append((arch, scores[arch.id]))
            if on_result is not None:
                on_result(len(summary.history), num_archs)
        summary.evaluated += len(todo)
        summary.replayed += len(fresh) - len(todo)
        for arch in asked:  # in ask order, repeats included: the strategy's contract
            strategy.tell(arch, scores[arch.id])
    return summary


def distinct_proposals(
    strategy: Strategy, num_archs: int, max_redraws: int = MAX_REDRAWS
) -> list[Architecture]:
    """The first `num_archs` distinct architectures `strategy` proposes: the stream shards split.

    Only for strategies whose proposals ignore scores (`uses_scores = False`): they are asked without
    being told, and the stream is the one `replay_or_evaluate` scores, in the same order, whatever
    its `batch_archs`.
    """
    check(
        not strategy.uses_scores,
        f"strategy {type(strategy).__name__} proposes from the scores of earlier proposals, so its "
        "stream cannot be drawn ahead; only score-free strategies (random) can be split into shards",
    )
    stream: dict[str, Architecture] = {}
    redraws = 0
    while len(stream) < num_archs:
        arch = strategy.ask()
        if arch.id in stream:
            redraws += 1
            check(
                redraws <= max_redraws,
                f"strategy {type(strategy).__name__} proposed {max_redraws:,} already-drawn "
                f"architectures in a row ({len(stream):,} distinct so far); lower search.num_archs",
            )
            continue
        redraws = 0
        stream[arch.id] = arch
    return list(stream.values())


def score_shard(
    strategy: Strategy,
    store: ResultsStore,
    num_archs: int,
    evaluate_fn: EvaluateFn,
    shard: int,
    num_shards: int,
    batch_archs: int = 1,
    on_result: Callable[[int, int], None] | None = None,
    row_fields: Mapping | None = None,
    max_redraws: int = MAX_REDRAWS,
) -> SearchSummary:
    """Score shard `shard` of `num_shards`: the architectures at positions k = shard (mod num_shards)
    of the stream of `num_archs` distinct proposals (`distinct_proposals`).

    Each row is stored with seq = k, its place in that stream, which is the seq a single-process
    `replay_or_evaluate` gives it: the union of the shards' stores is the single-process store. A
    killed shard rerun on its store scores only what it lacks (stored rows are reused, never scored
    again). `on_result(n_done, share)` counts this shard's architectures only.
    """
    _check_sizes(strategy.space, num_archs, batch_archs)
    check_shard(shard, num_shards, num_archs)
    stream = distinct_proposals(strategy, num_archs, max_redraws)
    mine = list(enumerate(stream))[shard::num_shards]
    summary = SearchSummary()
    for start in range(0, len(mine), batch_archs):
        chunk = mine[start : start + batch_archs]
        stored = {a.id: store.get(a.id) for _, a in chunk}
        todo = [a for _, a in chunk if stored[a.id] is None]
        seqs = {a.id: k for k, a in chunk}
        new_scores = _evaluate(store, todo, evaluate_fn, row_fields, seqs) if todo else {}
        for _, arch in chunk:
            row = stored[arch.id]
            score = row["oneshot_acc"] if row is not None else new_scores[arch.id]
            summary.history.append((arch, score))
            if on_result is not None:
                on_result(len(summary.history), len(mine))
        summary.evaluated += len(todo)
        summary.replayed += len(chunk) - len(todo)
    return summary


def check_shard(shard: int, num_shards: int, num_archs: int) -> None:
    """Refuse shard settings that do not name one of `num_shards` non-empty parts of the stream."""
    check(
        isinstance(num_shards, int) and num_shards >= 1,
        f"search.num_shards={num_shards!r} must be an integer >= 1 (1: one process scores all)",
    )
    check(
        isinstance(shard, int) and 0 <= shard < num_shards,
        f"search.shard={shard!r} must be an integer in [0, {num_shards}) for "
        f"search.num_shards={num_shards} (shards are numbered 0 .. num_shards-1)",
    )
    check(
        num_shards <= num_archs,
        f"search.num_shards={num_shards} exceeds search.num_archs={num_archs}; some shards "
        f"would score nothing: use at most {num_archs} shards",
    )


def _check_sizes(space, num_archs: int, batch_archs: int) -> None:
    count = space.count()
    check(
        isinstance(num_archs, int) and num_archs >= 1,
        f"search.num_archs={num_archs!r} must be an integer >= 1 (the paper scores 20000)",
    )
    check(
        num_archs <= count,
        f"search.num_archs={num_archs:,} exceeds the {count:,} architectures of space {space.name!r}; "
        f"lower num_archs to at most {count:,}",
    )
    check(
        isinstance(batch_archs, int) and batch_archs >= 1,
        f"search.batch_archs={batch_archs!r} must be an integer >= 1",
    )


def _ask_round(
    strategy: Strategy, want: int, scores: Mapping[str, float], max_redraws: int
) -> tuple[list[Architecture], list[Architecture]]:
    """Ask until `want` architectures new to this run arrive; return every ask and the new ones."""
    asked: list[Architecture] = []
    fresh: dict[str, Architecture] = {}
    redraws = 0
    while len(fresh) < want:
        arch = strategy.ask()
        asked.append(arch)
        if arch.id in scores or arch.id in fresh:
            redraws += 1
            check(
                redraws <= max_redraws,
                f"strategy {type(strategy).__name__} proposed {max_redraws:,} already-scored architectures "
                f"in a row ({len(scores):,} distinct so far); lower search.num_archs or use the random strategy",
            )
            continue
        redraws = 0
        fresh[arch.id] = arch
    return asked, list(fresh.values())


def _evaluate(
    store: ResultsStore,
    archs: list[Architecture],
    evaluate_fn: EvaluateFn,
    row_fields: Mapping | None,
    seqs: Mapping[str, int],
) -> dict[str, float]:
    """Score `archs` with `evaluate_fn`, store every result (with its seq from `seqs`), and return
    id -> stored score."""
    results = list(evaluate_fn(archs))
    check(
        len(results) == len(archs),
        f"evaluate_fn returned {len(results)} results for {len(archs)} architectures; expected one per architecture",
    )
    scores = {}
    for arch, result in zip(archs, results, strict=True):
        check(
            isinstance(result, Mapping) and "oneshot_acc" in result,
            f"evaluate_fn result for {arch.id} is {result!r}; expected a dict with 'oneshot_acc'",
        )
        row = {k: v for k, v in {**(row_fields or {}), **result}.items() if k not in _IDENTITY}
        row["arch"] = arch  # the store derives id and JSON from it and checks its space
        row["seq"] = seqs[arch.id]
        if store.add(row):
            scores[arch.id] = float(row["oneshot_acc"])
        else:  # another process stored it first: keep its score so every run agrees
            scores[arch.id] = store.get(arch.id)["oneshot_acc"]
    return scores

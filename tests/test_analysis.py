"""The analysis library against hand-computed references: KL, correlations, figures, Table 1."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from nas.errors import NasError
from nas.report.figures import (
    _legend_order,
    plot_correlation,
    plot_dropout_panels,
    plot_kl_curves,
    plot_kl_vs_accuracy,
)
from nas.report.kl import mean_symmetric_kl, symmetric_kl
from nas.report.markdown import markdown_table, write_report
from nas.report.stats import bucket_index, bucket_sample, mean_std, rank_correlations
from nas.report.table1 import table1, table1_rows
from nas.results.outputs import plot_histogram

# ---------------------------------------------------------------- symmetric KL


def _kl_reference(p: np.ndarray, q: np.ndarray) -> float:
    """D(p||q) + D(q||p) straight from the definition, in float64."""
    return float(np.sum(p * np.log(p / q)) + np.sum(q * np.log(q / p)))


def test_symmetric_kl_closed_form():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    # (p - q) . (log p - log q) = 0.4 ln(0.9/0.5) + 0.4 ln(0.5/0.1) = 0.4 ln 9
    expected = 0.4 * math.log(9.0)
    assert _kl_reference(p, q) == pytest.approx(expected, rel=1e-12)
    log_p, log_q = torch.log(torch.tensor(p[None])), torch.log(torch.tensor(q[None]))
    got = symmetric_kl(log_p, log_q)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Logits are defined up to a per-example shift; the divergence must not care.
    shifted = symmetric_kl(log_p + 7.0, log_q - 3.0)
    assert shifted.item() == pytest.approx(expected, rel=1e-6)


def test_symmetric_kl_matches_definition_on_random_batch():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 10, generator=gen, dtype=torch.float64) * 3
    b = torch.randn(16, 10, generator=gen, dtype=torch.float64) * 3
    got = symmetric_kl(a, b)
    pa, pb = torch.softmax(a, 1).numpy(), torch.softmax(b, 1).numpy()
    ref = [_kl_reference(pa[i], pb[i]) for i in range(16)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    assert torch.equal(got, symmetric_kl(b, a))  # symmetric by construction
    assert mean_symmetric_kl(a, b).item() == pytest.approx(float(np.mean(ref)), rel=1e-10)


def test_symmetric_kl_identical_is_zero():
    logits = torch.randn(32, 10, generator=torch.Generator().manual_seed(1)) * 5
    kl = symmetric_kl(logits, logits.clone())
    assert torch.all(kl == 0)
    assert mean_symmetric_kl(logits, logits).item() == 0.0


def test_symmetric_kl_extreme_logits_finite_and_right():
    big = 1e4
    one_hot_a = torch.tensor([[big, -big]])
    one_hot_b = torch.tensor([[-big, big]])
    uniform = torch.tensor([[0.0, 0.0]])
    # Opposite near-one-hot: log p = [0, -2e4], log q = [-2e4, 0], so each direction is 2e4.
    opposite = symmetric_kl(one_hot_a, one_hot_b)
    assert torch.isfinite(opposite).all()
    assert opposite.item() == pytest.approx(4 * big, rel=1e-6)
    # One-hot vs uniform: 0.5 ln 2 + 0.5 (2e4 - ln 2) = 1e4 exactly.
    assert symmetric_kl(one_hot_a, uniform).item() == pytest.approx(big, rel=1e-6)
    # Identical extreme logits stay exactly 0, and a mixed batch has no NaN/Inf anywhere.
    assert symmetric_kl(one_hot_a, one_hot_a).item() == 0.0
    mixed = torch.tensor([[big, -big, 0.0], [-big, 3.0, big], [1.0, 2.0, 3.0]])
    out = symmetric_kl(mixed, mixed.flip(1))
    assert torch.isfinite(out).all() and (out >= 0).all()
    # Half precision input is computed in float32 rather than overflowing.
    assert torch.isfinite(symmetric_kl(one_hot_a.half(), one_hot_b.half())).all()


def test_symmetric_kl_bad_input_names_the_problem():
    with pytest.raises(NasError, match="same shape"):
        symmetric_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(NasError, match=r"\[N, C\]"):
        symmetric_kl(torch.zeros(3), torch.zeros(3))
    with pytest.raises(NasError, match="NaN or Inf"):
        symmetric_kl(torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 2))
    with pytest.raises(NasError, match="at least one example"):
        mean_symmetric_kl(torch.zeros(0, 3), torch.zeros(0, 3))


# ---------------------------------------------------------------- rank correlations


def test_rank_correlations_known_rankings():
    n = 10
    x = list(range(n))
    same = rank_correlations(x, [v * 0.01 + 0.5 for v in x])
    assert same["kendall_tau"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    assert same["n"] == n
    rev = rank_correlations(x, x[::-1])
    assert rev["kendall_tau"] == pytest.approx(-1.0) and rev["spearman"] == pytest.approx(-1.0)
    swapped = x.copy()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    one_swap = rank_correlations(x, swapped)
    # One discordant pair out of n(n-1)/2: tau = 1 - 2 * 2/(n(n-1)); sum d^2 = 2 for Spearman.
    assert one_swap["kendall_tau"] == pytest.approx(1 - 4 / (n * (n - 1)), abs=1e-12)
    assert one_swap["spearman"] == pytest.approx(1 - 6 * 2 / (n * (n * n - 1)), abs=1e-12)
    for key in ("kendall_p", "spearman_p", "pearson_p"):
        assert 0.0 <= one_swap[key] < 0.01


def test_spearman_and_pearson_match_formulas():
    rng = np.random.default_rng(3)
    n = 12
    x = rng.normal(size=n)
    y = x + rng.normal(scale=1.0, size=n)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # ranks, no ties
    d2 = float(np.sum((rx - ry) ** 2))
    got = rank_correlations(x.tolist(), y.tolist())
    assert got["spearman"] == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)), abs=1e-12)
    assert got["pearson"] == pytest.approx(float(np.corrcoef(x, y)[0, 1]), abs=1e-12)
    concordant = sum(
        np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i in range(n) for j in range(i + 1, n)
    )
    assert got["kendall_tau"] == pytest.approx(concordant / (n * (n - 1) / 2), abs=1e-12)


def test_rank_correlations_constant_gives_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = rank_correlations([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])
    for key in ("kendall_tau", "kendall_p", "spearman", "spearman_p", "pearson", "pearson_p"):
        assert math.isnan(out[key])
    assert out["n"] == 3


def test_rank_correlations_bad_input():
    with pytest.raises(NasError, match="at least 2"):
        rank_correlations([0.5], [0.9])
    with pytest.raises(NasError, match="same length"):
        rank_correlations([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(NasError, match="NaN or Inf"):
        rank_correlations([0.1, float("nan"), 0.3], [0.1, 0.2, 0.3])


# ---------------------------------------------------------------- bucket sampling


def test_bucket_sample_respects_buckets():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.3, 0.9, size=300).tolist()
    num_buckets, per_bucket = 6, 4
    chosen = bucket_sample(scores, num_buckets, per_bucket, random.Random(7))
    assert len(set(chosen)) == len(chosen)  # without replacement
    lo, hi = min(scores), max(scores)
    width = (hi - lo) / num_buckets
    buckets = bucket_index(scores, num_buckets)
    counts = [0] * num_buckets
    for i in chosen:
        b = buckets[i]
        counts[b] += 1
        assert lo + b * width - 1e-12 <= scores[i] <= lo + (b + 1) * width + 1e-12
    members = [buckets.count(b) for b in range(num_buckets)]
    assert counts == [min(per_bucket, m) for m in members]
    # Same seed, same sample; the lowest bucket comes first.
    assert chosen == bucket_sample(scores, num_buckets, per_bucket, random.Random(7))
    assert chosen != bucket_sample(scores, num_buckets, per_bucket, random.Random(8))
    assert buckets[chosen[0]] == 0 and buckets[chosen[-1]] == num_buckets - 1


def test_bucket_sample_clusters_and_small_buckets():
    # Three buckets over [0, 1]: clusters sit well inside [0, 1/3), [1/3, 2/3), [2/3, 1].
    low = [0.05 + 0.02 * i for i in range(10)]  # indices 0..9
    mid = [0.5, 0.55]  # indices 10, 11: fewer than per_bucket
    high = [0.75 + 0.025 * i for i in range(10)] + [1.0]  # indices 12..22
    scores = [0.0] + low[1:] + mid + high  # min 0.0 and max 1.0 pin the range
    chosen = bucket_sample(scores, 3, 4, random.Random(0))
    assert len(chosen) == 4 + 2 + 4
    assert all(scores[i] < 1 / 3 for i in chosen[:4])
    assert chosen[4:6] == [10, 11]
    assert all(scores[i] >= 2 / 3 for i in chosen[6:])
    assert bucket_sample(scores, 3, 0, random.Random(0)) == []
    assert bucket_index([0.7, 0.7, 0.7], 5) == [0, 0, 0]
    with pytest.raises(NasError, match="num_buckets"):
        bucket_sample(scores, 0, 4, random.Random(0))
    with pytest.raises(NasError, match="random.Random"):
        bucket_sample(scores, 3, 4, 0)


# ---------------------------------------------------------------- figures


def _read_png(path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as img:
        assert img.format == "PNG"
        arr = np.asarray(img.convert("RGB"))
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 10  # something was drawn
    return arr


def test_figures_write_readable_pngs_of_expected_size(tmp_path):
    rng = np.random.default_rng(0)
    oneshot = rng.uniform(0.3, 0.9, size=20)
    standalone = 0.92 + 0.025 * oneshot + rng.normal(scale=0.002, size=20)
    out = plot_histogram(rng.uniform(0.3, 0.9, size=500), tmp_path / "hist.png")
    assert out == tmp_path / "hist.png" and _read_png(out).shape == (450, 600, 3)
    out = plot_correlation(oneshot, standalone, tmp_path / "sub" / "corr.png", errors=[0.001] * 20)
    assert _read_png(out).shape == (450, 600, 3)
    stats = rank_correlations(oneshot, standalone)
    assert _read_png(plot_correlation(oneshot, standalone, tmp_path / "c2.png", stats)).shape == (
        450,
        600,
        3,
    )
    out = plot_kl_vs_accuracy(rng.uniform(0, 2, size=20), oneshot, tmp_path / "kl.png")
    assert _read_png(out).shape == (450, 600, 3)
    panels = [
        dict(rate=r, oneshot=oneshot.tolist(), standalone=standalone.tolist())
        for r in (1e-6, 0.1, 0.3)
    ]
    assert _read_png(plot_dropout_panels(panels, tmp_path / "drop.png")).shape == (450, 900, 3)
    steps = list(range(0, 1000, 100))
    curves = {a: (steps, rng.uniform(0, 1, size=10).tolist()) for a in ("a", "b", "c")}
    out = plot_kl_curves(curves, tmp_path / "curves.png", final_acc={"a": 0.7, "b": 0.9, "c": 0.8})
    assert _read_png(out).shape == (450, 600, 3)


def test_figure_inputs_are_checked():
    assert _legend_order(["a", "b", "c"], {"a": 0.7, "b": 0.9, "c": 0.8}) == ["b", "c", "a"]
    assert _legend_order(["a", "b"], None) == ["a", "b"]
    with pytest.raises(NasError, match="no accuracy"):
        _legend_order(["a", "b"], {"a": 0.7})
    with pytest.raises(NasError, match="same length"):
        plot_correlation([0.5, 0.6], [0.9], "x.png")
    with pytest.raises(NasError, match=r"\.png"):
        plot_histogram([0.5, 0.6], "hist.jpg")
    with pytest.raises(NasError, match="lacks key"):
        plot_dropout_panels([dict(rate=0.1, oneshot=[0.5])], "x.png")


# ---------------------------------------------------------------- reports and Table 1


def test_write_report_exact_markdown(tmp_path):
    sections = [
        dict(
            heading="Search",
            text="Scored 3 architectures.",
            image="figs/hist.png",
            numbers={"best": 0.912345, "count": 20000},
        ),
        dict(
            heading="Top",
            table=[
                {"arch": "a1", "acc": 0.9, "params": 1200000},
                {"arch": "b|2", "acc": 0.85123456, "params": 800000},
            ],
        ),
    ]
    out = write_report(tmp_path / "report.md", "Study", sections)
    expected = (
        "# Study\n\n"
        "## Search\n\n"
        "Scored 3 architectures.\n\n"
        "![Search](figs/hist.png)\n\n"
        "- **best**: 0.9123\n"
        "- **count**: 20000\n\n"
        "## Top\n\n"
        "| arch |    acc |  params |\n"
        "| ---- | -----: | ------: |\n"
        "| a1   |    0.9 | 1200000 |\n"
        "| b\\|2 | 0.8512 |  800000 |\n"
    )
    assert out.read_text() == expected
    with pytest.raises(NasError, match="heading"):
        write_report(tmp_path / "r.md", "x", [dict(text="no heading")])
    with pytest.raises(NasError, match="relative"):
        write_report(tmp_path / "r.md", "x", [dict(heading="h", image="/abs/fig.png")])


def _runs():
    # Given out of order: Random first, F=32 before F=16; the table uses the paper's order.
    return [
        dict(group="Random", filters=32, params=1.7e6, test_acc=0.955),
        dict(group="Random", filters=16, params=1e6, test_acc=0.94),
        dict(group="Random", filters=16, params=3e6, test_acc=0.96),
        dict(group="All On", filters=16, params=1.3e6, test_acc=0.95),
        dict(group="One-Shot Top", filters=16, params=0.6e6, test_acc=0.944),
        dict(group="One-Shot Top", filters=16, params=0.8e6, test_acc=0.948),
    ]


def test_table1_markdown_uses_sample_std():
    expected = (
        "| group        | filters | params (M)  | test acc (%) | s.e. (%) |   n |\n"
        "| ------------ | ------: | ----------- | ------------ | -------- | --: |\n"
        "| One-Shot Top |      16 | 0.70 ± 0.14 | 94.60 ± 0.28 | 0.20     |   2 |\n"
        "| All On       |      16 | 1.30        | 95.00        | —        |   1 |\n"
        "| Random       |      16 | 2.00 ± 1.41 | 95.00 ± 1.41 | 1.00     |   2 |\n"
        "| Random       |      32 | 1.70        | 95.50        | —        |   1 |"
    )
    assert table1(_runs()) == expected


def test_table1_rows_values():
    rows = table1_rows(_runs())
    assert [(r["group"], r["filters"], r["n"]) for r in rows] == [
        ("One-Shot Top", 16, 2),
        ("All On", 16, 1),
        ("Random", 16, 2),
        ("Random", 32, 1),
    ]
    random16 = rows[2]
    assert random16["params_m_mean"] == pytest.approx(2.0)
    assert random16["params_m_std"] == pytest.approx(float(np.std([1.0, 3.0], ddof=1)))
    assert random16["test_acc_pct_mean"] == pytest.approx(95.0)
    assert random16["test_acc_pct_std"] == pytest.approx(math.sqrt(2.0))
    assert rows[1]["params_m_std"] is None and rows[1]["test_acc_pct_std"] is None
    assert random16["test_acc_pct_se"] == pytest.approx(
        math.sqrt(2.0) / math.sqrt(2)
    )  # std / sqrt(n)
    assert rows[1]["test_acc_pct_se"] is None
    no_filters = table1_rows([dict(group="Custom", params=2e6, test_acc=0.9)])
    assert no_filters[0]["filters"] is None
    assert "| Custom | —       |" in table1([dict(group="Custom", params=2e6, test_acc=0.9)])


def test_mean_std_of_a_single_value_has_no_std_and_shows_as_n_a():
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))
    table = markdown_table([{"arch": "a", "std": 0.25}, {"arch": "b", "std": None}])
    assert table.splitlines()[1:] == ["| ---- | ---: |", "| a    | 0.25 |", "| b    |  n/a |"]


def test_table1_and_markdown_table_bad_input():
    with pytest.raises(NasError, match="fraction"):
        table1([dict(group="Random", params=1e6, test_acc=94.1)])
    with pytest.raises(NasError, match="lacks key"):
        table1([dict(group="Random", test_acc=0.9)])
    with pytest.raises(NasError, match="at least one"):
        table1([])
    with pytest.raises(NasError, match="at least one row"):
        markdown_table([])

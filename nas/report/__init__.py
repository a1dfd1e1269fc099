"""Everything that reports on runs and searches: the statistics, the figures, the pages, the studies.

Shared parts (the studies and the reports call these; none of them imports a study):
- `stats`: rank correlations, bucketed samples, bootstrap intervals, top-k precision and regret;
- `kl`: symmetrized KL between two models' class distributions;
- `panel`: the fixed panel of architectures and its KL / accuracy (the `OneShotPanel` callback's
  curves and the studies' numbers are one computation);
- `figures`: the paper's figures as PNGs;
- `markdown`: Markdown tables and report pages;
- `runs`: `result.json` of every training run, written and read back;
- `stores`: the one reader of a search's results store;
- `table1`: the paper's Table 1 (`python -m nas.collect`);
- `wandb_log`: figures and tables to W&B, only when asked for.

`quality/` is the ranking-quality report (`python -m nas.quality`, `python -m nas.quality.sample`),
`studies/` the paper's studies (Figs. 4-7), the one-page report and the method comparison, each a
function that `study.py` instantiates from `conf/study/*.yaml`.
"""

"""The paper's studies (Figs. 4-7) as functions: inputs from runs and stores, a PNG and a JSON out.

Each is a function `study.py` instantiates from `conf/study/<name>.yaml` (its `_target_` names the
module): `correlation` (Fig. 5: `correlation_pick`, `correlation_study`), `kl_accuracy` (Fig. 6),
`curves` (Fig. 7), `dropout` (Fig. 4), `report` (one page of them all), `method_comparison` (every
method judged on one truth; its steps in `comparison`). `common` holds their shared plumbing.
"""

"""The ranking-quality report: how well a search's one-shot scores rank architectures against the
truth (retraining, or NAS-Bench-201), and the stratified sample to retrain for it.

`report` computes and writes it, `cli` is `python -m nas.quality`, `sample` is
`python -m nas.quality.sample`, `nb201` the NAS-Bench-201 lookup.
"""

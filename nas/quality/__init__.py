"""Entry modules of the ranking-quality commands only; the report lives in `nas.report.quality`.

`python -m nas.quality ...` (`__main__.py`) and `python -m nas.quality.sample ...` (`sample.py`).
"""

"""`python -m nas.collect multirun/<dir> [--json FILE]`: the paper's Table 1 of finished stand-alone runs.

The command's entry module only; the table is `nas.report.table1`, the `result.json` of every run
(written by train.py) `nas.report.runs`.
"""

from __future__ import annotations

import sys

from nas.report.runs import write_run_result  # noqa: F401  (its earlier home; still importable)
from nas.report.table1 import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m nas.quality.sample --store <results.sqlite> --n 20 --buckets 5`: the stratified sample.

The command's entry module only: the sample is `nas.report.quality.sample`.
"""

from __future__ import annotations

import sys

from nas.report.quality.sample import main

if __name__ == "__main__":
    sys.exit(main())

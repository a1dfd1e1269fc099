"""`python -m nas.quality --store <results.sqlite> --truth <multirun dir> | nb201:<file> [--out DIR]`.

The command's entry module only: the report is `nas.report.quality`.
"""

from __future__ import annotations

import sys

from nas.report.quality.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m nas.export --ckpt <stand-alone run's checkpoint> --out <dir> [--force]`.

The command's entry module only: the export is `nas.export.run`, the command line `nas.export.cli`.
"""

from __future__ import annotations

import sys

from nas.export.cli import main

if __name__ == "__main__":
    sys.exit(main())

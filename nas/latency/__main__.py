"""`python -m nas.latency build | validate`: the command's entry module only (`nas.latency.cli`)."""

from __future__ import annotations

import sys

from nas.latency.cli import main

if __name__ == "__main__":
    sys.exit(main())

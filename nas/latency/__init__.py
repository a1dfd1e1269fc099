"""Latency on the target device: a table of measured path times, predictions, and their validation.

`python -m nas.latency build` times every op at every position of a space's stand-alone children
(`build`, `timing`, `attribution`) into a table file (`table`); an architecture's predicted latency
is the table's fixed part plus the times of the paths its child holds. `python -m nas.latency
validate` compares predictions with measured end-to-end latency (`validate`). docs/latency.md.
"""

from nas.latency.table import LatencyTable

__all__ = ["LatencyTable"]

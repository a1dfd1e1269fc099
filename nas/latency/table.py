"""A latency table: the measured time of every path (op at its position) and of the fixed part.

The predicted latency of an architecture is the fixed part (stem, reductions, head and whatever
every child runs) plus, for each path its child holds (`nas.latency.attribution`), the path's time
and the glue that joins a path to the network outside its modules (`per_path_ms`). The table
is a JSON file that names what it was measured for (space, network settings, input shape, batch
size) and on (device, hardware, torch version, date), so a search refuses a table of another
network instead of predicting nonsense.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nas.atomic import write_text
from nas.errors import NasError, check
from nas.latency.attribution import used_keys
from nas.spaces.base import Architecture, SearchSpace, build_space

FORMAT = 1
PathKey = tuple


@dataclass
class LatencyTable:
    """Measured milliseconds per path key (`ops`) and of the fixed part, for one network."""

    space_spec: dict
    fingerprint: str  # of the space's decisions: the architectures it predicts
    network: dict  # filters, cells, stages, num_classes, in_channels
    input_shape: tuple[int, ...]  # one example, without the batch: (C, H, W)
    batch_size: int
    fixed_ms: float
    ops: dict[PathKey, float]
    per_path_ms: float = 0.0  # glue around each path, outside its modules (`nas.latency.build`)
    info: dict = field(default_factory=dict)  # device, hardware, torch, date, warm-up, repeats, ...
    _paths_used = None

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, arch: Architecture) -> float:
        """Predicted milliseconds of the stand-alone network of `arch`."""
        check(
            arch.space.fingerprint == self.fingerprint,
            f"architecture {arch.id} is from space {arch.space.name!r} (fingerprint "
            f"{arch.space.fingerprint}), but the latency table was measured for fingerprint "
            f"{self.fingerprint}; build a table for this space (python -m nas.latency build)",
        )
        if self._paths_used is None:  # the supernet knows which paths a child holds
            with torch.device("meta"):
                supernet = self.space().build_supernet(**self.network)
            self._paths_used = supernet.paths_used
        options = {tuple(k) for k in self.info.get("undeclared_options", [])}
        keys = used_keys(self._paths_used, arch, set(self.ops) - options, set(self.ops) & options)
        return self.fixed_ms + sum(self.ops[k] + self.per_path_ms for k in keys)

    def space(self) -> SearchSpace:
        return build_space(self.space_spec)

    # -- matching a search --------------------------------------------------------------------
    def check_matches(
        self, space: SearchSpace, network: Mapping, input_shape, source: str = "the checkpoint"
    ) -> None:
        """Refuse a table measured for another space, network or input shape than `source`'s."""
        differences = []
        if space.fingerprint != self.fingerprint:
            differences.append(f"space {self.space_spec} (table) vs {space.spec()}")
        for key, value in dict(network).items():
            if self.network.get(key) != value:
                differences.append(f"model.{key}={self.network.get(key)} (table) vs {value}")
        if tuple(input_shape) != tuple(self.input_shape):
            differences.append(f"input shape {list(self.input_shape)} vs {list(input_shape)}")
        check(
            not differences,
            f"latency table {self.info.get('path', '?')} was measured for another network than "
            f"{source}: {'; '.join(differences)}; build one for it: python -m nas.latency build "
            f"--device {self.info.get('device', 'cpu')} --space <its space> "
            + " ".join(f"model.{k}={v}" for k, v in dict(network).items() if k in _MODEL_KEYS),
        )

    # -- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "space": self.space_spec,
            "space_fingerprint": self.fingerprint,
            "network": self.network,
            "input_shape": list(self.input_shape),
            "batch_size": self.batch_size,
            "fixed_ms": self.fixed_ms,
            "per_path_ms": self.per_path_ms,
            "ops": [{"path": list(k), "ms": v} for k, v in self.ops.items()],
            **{k: v for k, v in self.info.items() if k != "path"},
        }

    def save(self, path: str | Path) -> Path:
        return write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @property
    def content_hash(self) -> str:
        """What a search records to tell tables apart (the same table anywhere on disk)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path).expanduser()
        check(
            path.is_file(),
            f"latency table {str(path)!r} does not exist; build one with python -m nas.latency "
            "build --device cpu --space <space> --out <file>",
        )
        try:
            data = json.loads(path.read_text())
            check(data.get("format") == FORMAT, f"format {data.get('format')!r}, not {FORMAT}")
            table = cls(
                space_spec=dict(data["space"]),
                fingerprint=str(data["space_fingerprint"]),
                network=dict(data["network"]),
                input_shape=tuple(int(s) for s in data["input_shape"]),
                batch_size=int(data["batch_size"]),
                fixed_ms=float(data["fixed_ms"]),
                per_path_ms=float(data.get("per_path_ms", 0.0)),
                ops={tuple(e["path"]): float(e["ms"]) for e in data["ops"]},
                info={k: v for k, v in data.items() if k not in _FIELDS},
            )
        except (ValueError, KeyError, TypeError, AttributeError, NasError) as err:
            raise NasError(
                f"latency table {str(path)!r} is not a table written by python -m nas.latency "
                f"build ({type(err).__name__}: {err}); build it again"
            ) from None
        table.info["path"] = str(path.resolve())
        return table


_FIELDS = {
    "format",
    "space",
    "space_fingerprint",
    "network",
    "input_shape",
    "batch_size",
    "fixed_ms",
    "per_path_ms",
    "ops",
}
_MODEL_KEYS = ("filters", "cells", "stages")

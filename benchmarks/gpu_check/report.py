"""report.json and report.md of a GPU check, rewritten after every section (a cut-off run keeps
what finished; sections not reached say so)."""

from __future__ import annotations

import json
import math
from pathlib import Path

SECTIONS = {
    "cuda_tests": "1. CUDA tests",
    "throughput": "2. Throughput",
    "real_data": "3. Real-data run",
    "targets": "4. Targets",
}


def fmt(value, digits: int = 1) -> str:
    """A number for the table: thousands separated; '-' for missing or non-finite values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


class Report:
    def __init__(self, out: Path, header: dict):
        self.out = out
        self.data = {"header": header, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def set(self, key: str, section: dict) -> None:
        self.data["sections"][key] = section
        self.write()

    def write(self) -> None:
        (self.out / "report.json").write_text(json.dumps(self.data, indent=2) + "\n")
        (self.out / "report.md").write_text(self.markdown())

    def markdown(self) -> str:
        h = self.data["header"]
        lines = [
            f"# GPU check ({h['mode']})",
            "",
            f"- hardware: {h['hardware']}",
            f"- torch {h['torch']}, Python {h['python']}, Lightning {h['lightning']}",
            f"- date: {h['date']}",
            f"- command: `{h['command']}`",
            "",
        ]
        render = {
            "cuda_tests": _tests_md,
            "throughput": _throughput_md,
            "real_data": _real_data_md,
            "targets": _targets_md,
        }
        for key, title in SECTIONS.items():
            lines += [f"## {title}", ""]
            section = self.data["sections"].get(key)
            if section is None:
                lines += ["not run (the check stopped before this section)", ""]
                continue
            lines += render[key](section) + [f"section time: {section['seconds']:.1f} s", ""]
        return "\n".join(lines)


def _tests_md(s: dict) -> list[str]:
    return [f"`{s['command']}` (exit {s['returncode']}):", "", f"    {s['summary']}", ""]


def _throughput_md(s: dict) -> list[str]:
    lines = [
        "| measurement | settings | rate | step (ms) | peak memory (MiB) | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, row in s["rows"].items():
        rate = f"{fmt(row.get('rate'))} {row.get('unit', '')}".strip() if "rate" in row else "-"
        lines.append(
            f"| {name} | {row.get('settings', '')} | {rate} | {fmt(row.get('step_ms'), 2)} | "
            f"{fmt(row.get('peak_mib'))} | {row.get('error', '')} |"
        )
    return [*lines, ""]


def _real_data_md(s: dict) -> list[str]:
    lines = [
        f"data: {s['data']}; {s['settings']}",
        "",
        f"- {s['device']}: {s['steps']} steps, {fmt(s.get('img_s'))} img/s, "
        f"step {fmt(s.get('step_ms'), 2)} ms, peak memory {fmt(s.get('peak_mib'))} MiB "
        f"{s.get('error', '')}",
        f"- CPU numerics check: first {s.get('compared', 0)} losses, device {s.get('losses')} vs "
        f"CPU {s.get('cpu_losses')}; largest relative difference {fmt(s.get('max_rel_diff'), 6)}, "
        f"tolerance {s['tolerance']} ({s['tolerance_why']}): "
        f"**{'agree' if s.get('agree') else 'DISAGREE'}** {s.get('cpu_error', '')}",
        "",
        "Epoch time implied on CIFAR-10 (steps per epoch x measured step time; the step time's source"
        " in the last column):",
        "",
        "| experiment | batch | train images | steps/epoch | step (ms) | epoch (s) | step measured by |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, e in s["epochs"].items():
        lines.append(
            f"| {name} | {e['batch_size']} | {fmt(e['train_images'])} | {fmt(e['steps'])} | "
            f"{fmt(e.get('step_ms'), 2)} | {fmt(e.get('epoch_s'))} | {e['source']} |"
        )
    return [*lines, ""]


def _targets_md(s: dict) -> list[str]:
    lines = ["| target | measured | status |", "|---|---:|---|"]
    for t in s["rows"]:
        lines.append(f"| {t['target']} | {fmt(t.get('measured'))} {t['unit']} | {t['status']} |")
    return [*lines, ""]

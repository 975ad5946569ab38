"""The machine line that every benchmark table prints: CPU model, cores, and the instruction-set flags that
change SPU's and the PSI's speed (CPUs of one kind of machine differ; see DESIGN.md)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512ifma", "aes", "sha_ni", "bmi2", "adx")


def cpu() -> dict:
    """Model, core count and the FLAGS present, from /proc/cpuinfo (Linux); best effort elsewhere."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", "unknown CPU", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cpus": os.cpu_count(), "flags": {flag: flag in flags for flag in FLAGS}}


def cpu_line() -> str:
    info = cpu()
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in info["flags"].items())
    return f"Machine: {info['model']}, {info['cpus']} CPUs; {flags}; Python {platform.python_version()}"

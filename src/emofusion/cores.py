"""The CPU cores this process may use: one answer for the batch workers and the feature threads."""

from __future__ import annotations

import os


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (all of them where the OS cannot tell)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))

"""How the nets share the cores with the face path's worker threads."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def beside_workers() -> int:
    """Torch threads for the nets while the face worker threads still decode and detect: one
    fewer than set, so the nets' threads do not fight the workers for the cores (on 2 cores,
    OpenMP threads otherwise wait at every barrier for a thread the workers displaced). The
    nets' outputs do not depend on the thread count (checked: bit-identical)."""
    return max(1, torch.get_num_threads() - 1)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: unchanged), then restore them.
    The count is per calling thread (OpenMP); torch also remembers the last value set as
    the default of threads that start using torch later, and the restore puts it back."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""Seeds for normkit's counter-based random numbers (dropout masks, augmentation).

Every random decision in normkit is a pure function of ``(seed, element index)`` through
Philox4x32-10, so it does not depend on the thread count, the ISA or the device. A call given
``seed=None`` takes the next seed from this module's state: a NumPy ``PCG64`` generator seeded from
OS entropy at import, or with :func:`seed` for reproducible runs.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["default_seed", "seed"]

_lock = threading.Lock()
_gen = np.random.Generator(np.random.PCG64())


def seed(s: int | None = None) -> None:
    """Restart the seed stream: ``seed(s)`` makes every later ``seed=None`` call reproducible;
    ``seed(None)`` reseeds from OS entropy."""
    global _gen
    if s is not None and (not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0):
        raise TypeError(f"seed must be a non-negative int or None, got {s!r}")
    with _lock:
        _gen = np.random.Generator(np.random.PCG64(s))


def default_seed() -> int:
    """The next 64-bit seed of the stream (what a ``seed=None`` call uses)."""
    with _lock:
        return int(_gen.integers(0, 2**64, dtype=np.uint64))

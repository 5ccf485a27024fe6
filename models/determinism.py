"""Seeded training that gives the same weights run after run, whatever the thread count's scheduling.

With more than one intra-op thread, torch's CPU kernels may add the same numbers in a different order
from one run to the next (a two-tower fitted twice on ml-100k in two processes with two threads
differed in the last bits of every weight; the ranker's features, and with them its training groups,
followed). :func:`deterministic` switches torch to its deterministic kernels for the block and
restores the previous mode after it (a global flag: the block should not overlap other torch work).

Example:
    >>> import torch
    >>> with deterministic():
    ...     torch.are_deterministic_algorithms_enabled()
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)

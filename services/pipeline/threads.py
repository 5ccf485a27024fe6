"""Thread pools of a serving process (feed API, publisher): one thread each for OpenMP, OpenBLAS,
torch and FAISS.

A feed is many small numerical steps (a [1, 50, 64] transformer pass, a 500 x 35 ranker pass, a
FAISS search, 500 x d dot products). Intra-op threads only add spin-waits for them, and under a loaded
CPU they collapse (measured here: a two-thread FAISS flat search of one query took 12 ms, 0.3 ms on one
thread; torch 100x slower with two). A serving process gets its parallelism from several worker
processes and a few feed threads instead.

Importing this module sets the environment defaults the native pools read when they load, so it is
imported before numpy in the processes' ``__main__``; :func:`serving_process` pins the pools that
are already loaded and makes the interpreter hand the GIL over more often (1 ms instead of 5 ms), so
the event loop can admit and shed requests while feed threads compute.
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

SWITCH_INTERVAL_S = 0.001


def serving_process() -> None:
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables above cover pools loaded after this
        pass
    else:
        threadpool_limits(1)
    sys.setswitchinterval(SWITCH_INTERVAL_S)

"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the closed-form
item-item regression ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1``, with a zero diagonal.

A user's score row is ``h @ B`` for their binary history ``h``: the same form as ItemKNN's, so the
learned ``cf`` relation (``models.item_neighbours``) scores ``sim`` with ItemKNN's own code. ``B`` is
dense while it is solved (``n_items^2`` floats), so :class:`EASE` is meant for catalogues up to a few
ten thousand items; the relation keeps each target item's top-``k`` sources by magnitude (negative
weights too: they say "people who had this rarely want that"), sparse, which is what is stored and
served.

Example:
    >>> import numpy as np
    >>> e = EASE(lam=1.0, k=2).fit([np.array([0, 1]), np.array([0, 1]), np.array([2])], 3)
    >>> bool(e.sim[0, 1] > 0), e.sim.shape
    (True, (3, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from models.baselines import binary_matrix

IntArray = npt.NDArray[np.int64]
COLUMN_BLOCK = 1024  # targets pruned at once: the argpartition's index array stays n x 1024


@dataclass
class EASE:
    lam: float = 250.0
    k: int = 200

    def fit(self, train_seq: Sequence[IntArray], n_items: int) -> EASE:
        x = binary_matrix(train_seq, n_items)
        gram = (x.T @ x).toarray().astype(np.float32)
        gram[np.diag_indices(n_items)] += np.float32(self.lam)
        p = np.linalg.inv(gram)
        del gram
        b = p / -np.diag(p)[None, :]  # column j divided by -P[j, j]
        del p
        b[np.diag_indices(n_items)] = 0.0
        self.sim = top_k_columns(b, self.k)
        self.n_items = n_items
        return self


def top_k_columns(b: npt.NDArray[np.float32], k: int) -> sp.csr_matrix:
    """Each column's ``k`` largest entries by magnitude (all of them when ``k`` >= rows), as CSR."""
    n_rows, n_cols = b.shape
    if k >= n_rows:
        return sp.csr_matrix(b)
    src, dst, val = [], [], []
    for lo in range(0, n_cols, COLUMN_BLOCK):
        block = b[:, lo:lo + COLUMN_BLOCK]
        rows = np.argpartition(-np.abs(block), k - 1, axis=0)[:k]
        cols = np.broadcast_to(np.arange(block.shape[1]), rows.shape)
        vals = block[rows, cols]
        keep = vals != 0
        src.append(rows[keep])
        dst.append(cols[keep] + lo)
        val.append(vals[keep])
    return sp.csr_matrix((np.concatenate(val), (np.concatenate(src), np.concatenate(dst))),
                         shape=(n_rows, n_cols), dtype=np.float32)

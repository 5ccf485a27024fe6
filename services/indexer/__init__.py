"""Indexer: FAISS index from the active item tower over the current catalogue, recall-gated."""

from services.indexer.ann import exact_recall
from services.indexer.job import IndexOutcome, run_index

__all__ = ["IndexOutcome", "exact_recall", "run_index"]

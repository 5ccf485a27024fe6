"""Pure PyTorch, FAISS and numpy: towers, rankers, re-rankers, bandits, indexes, evaluation."""

"""``bench serve`` ranks with a ranker in the shape the training job promotes: an ensemble of
``TrainConfig.ranker_members`` rankers, so the bench's CPU per feed pays what serving pays."""

from __future__ import annotations

import numpy as np
import torch

from funnel.features import FEATURES
from funnel.training import TrainConfig
from services.cli.serve_models import train_ranker


def test_the_bench_ranker_is_the_promoted_shape():
    ranker = train_ranker(rows=300, seed=0)
    members = TrainConfig().ranker_members
    assert ranker.config.members == members > 1
    assert len(ranker.model.members) == members
    dense = torch.as_tensor(np.random.default_rng(0).random((5, len(FEATURES)), dtype=np.float32))
    sparse = torch.zeros((5, 0), dtype=torch.int64)
    with torch.inference_mode():
        outs = [m(dense, sparse)["click"] for m in ranker.model.members]
        mean = ranker.model(dense, sparse)["click"]
    assert torch.allclose(mean, torch.stack(outs).mean(0))
    assert not torch.allclose(outs[0], outs[1])  # members fitted apart

"""Training task for the two-tower model: next-item in-batch sampled softmax with logQ correction.

Every position of every training window predicts the next item. The candidates of a batch are the
unique target items of that batch (plus ``mixed_negatives`` uniformly drawn items, optional), and
``log q(item)`` (its training frequency) is subtracted from their logits so popular items are not
over-penalised for appearing in many batches (Yi et al., 2019).

Entry point::

    model = train_two_tower(train_seq, n_items, content, TwoTowerConfig(...), TwoTowerTrainConfig())

``train_seq[u]`` is user u's training items in time order as 0-based codes; ``content`` is
``[n_items, content_dim]`` (or None). ``validate`` (optional) is called every ``eval_every`` epochs
with the model and returns a score to maximise; the best state is kept (early stopping).
Training is seeded: same data + config -> same weights (torch's deterministic kernels:
``models.determinism``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from models.determinism import deterministic
from models.two_tower import TwoTowerConfig, TwoTowerModel

log = logging.getLogger(__name__)
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TwoTowerTrainConfig:
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    logq: bool = True
    mixed_negatives: int = 0
    eval_every: int = 5
    patience: int = 3
    seed: int = 0
    max_seconds: float = 300.0


class RetrievalTask:
    """The loss: sampled softmax over in-batch candidates, logQ-corrected."""

    def __init__(self, model: TwoTowerModel, item_freq: torch.Tensor, cfg: TwoTowerTrainConfig) -> None:
        self.model = model
        self.log_q = torch.log(item_freq / item_freq.sum() + 1e-12)
        self.cfg = cfg

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """inputs/targets [B, L] codes (0 = padding). Item-tower work is done once per unique item."""
        flat = targets[targets > 0]
        cands, labels = torch.unique(flat, return_inverse=True)
        if self.cfg.mixed_negatives:
            extra = torch.randint(1, self.model.cfg.n_items + 1, (self.cfg.mixed_negatives,), generator=gen)
            cands = torch.cat([cands, torch.unique(extra[~torch.isin(extra, cands)])])
        uniq, inv = torch.unique(torch.cat([cands, inputs.flatten()]), return_inverse=True)
        raw = self.model.items.raw(uniq)
        seq = raw[inv[len(cands):]].view(*inputs.shape, -1)
        users = self.model.users(seq, inputs == 0)[targets > 0]
        item_vecs = F.normalize(raw[inv[:len(cands)]], dim=-1)
        logits = users @ item_vecs.T / self.model.cfg.temperature
        if self.cfg.logq:
            logits = logits - self.log_q[cands]
        return F.cross_entropy(logits, labels)


def make_windows(train_seq: Sequence[IntArray], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut every sequence (codes + 1) into left-padded windows: inputs and next-item targets."""
    ins, outs = [], []
    for s in train_seq:
        codes = np.asarray(s, np.int64) + 1
        for end in range(len(codes), 1, -max_len):
            w = codes[max(0, end - max_len - 1):end]
            ins.append(_left_pad(w[:-1], max_len))
            outs.append(_left_pad(w[1:], max_len))
    if not ins:
        raise ValueError("no training sequence has 2 or more items")
    return torch.from_numpy(np.stack(ins)), torch.from_numpy(np.stack(outs))


def _left_pad(x: IntArray, length: int) -> IntArray:
    out = np.zeros(length, np.int64)
    out[length - len(x):] = x[-length:] if len(x) else x
    return out


def pad_histories(histories: Sequence[IntArray], max_len: int) -> torch.Tensor:
    """0-based history codes -> left-padded ``[B, max_len]`` tensor of codes + 1."""
    return torch.from_numpy(np.stack([_left_pad(np.asarray(h, np.int64)[-max_len:] + 1, max_len)
                                      for h in histories]))


def train_two_tower(train_seq: Sequence[IntArray], n_items: int, content: npt.NDArray[np.float32] | None,
                    model_cfg: TwoTowerConfig, cfg: TwoTowerTrainConfig,
                    validate: Callable[[TwoTowerModel], float] | None = None) -> TwoTowerModel:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = TwoTowerModel(model_cfg, _content_table(content, n_items, model_cfg.content_dim))
    freq = torch.from_numpy(np.bincount(np.concatenate(list(train_seq)) + 1, minlength=n_items + 1))
    model.items.seen.copy_((freq > 0).float())
    task = RetrievalTask(model, freq.float() + 1.0, cfg)
    inputs, targets = make_windows(train_seq, model_cfg.max_len)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    with deterministic():
        _fit(model, task, opt, inputs, targets, cfg, gen, validate)
    model.eval()
    return model


def _content_table(content: npt.NDArray[np.float32] | None, n_items: int, dim: int) -> torch.Tensor:
    table = torch.zeros(n_items + 1, max(dim, 1))
    if content is not None and dim:
        table[1:] = torch.from_numpy(np.asarray(content, np.float32))
    return table


def _fit(model: TwoTowerModel, task: RetrievalTask, opt: torch.optim.Optimizer, inputs: torch.Tensor,
         targets: torch.Tensor, cfg: TwoTowerTrainConfig, gen: torch.Generator,
         validate: Callable[[TwoTowerModel], float] | None) -> None:
    best, best_state, bad, start = -np.inf, None, 0, time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(inputs), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            opt.zero_grad()
            loss = task.loss(inputs[idx], targets[idx], gen)
            loss.backward()
            opt.step()
        over = time.monotonic() - start > cfg.max_seconds
        if validate is None or (epoch % cfg.eval_every and epoch != cfg.epochs and not over):
            if over:
                break
            continue
        model.eval()
        score = validate(model)
        log.info("two-tower epoch %d loss %.4f valid %.4f", epoch, float(loss.detach()), score)
        if score > best:
            best, bad = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if bad >= cfg.patience or over:
            break
    if best_state is not None:
        model.load_state_dict(best_state)

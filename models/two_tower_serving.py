"""Serving wrapper of the two-tower model: string ids in, float32 vectors out; export and index.

API used by the trainer/indexer (LIFECYCLE) and the serving pipeline (SERVING)::

    serving = TwoTowerServing(model, item_ids)            # item_ids[code - 1] = string id
    serving.user_vectors([["i1", "i7"], ["i3"]])          # [2, dim], newest item last
    serving.item_vectors(["i1", "new"], content=vecs)     # unknown ids placed by content alone
    serving.new_item_vectors(content)                     # cold start from ContentEncoder vectors
    index = serving.build_index()                         # models.index.ItemIndex over known items
    serving.save(dir); TwoTowerServing.load(dir)          # artifact kind "two_tower"

History items the model does not know are skipped. ``content`` rows must come from the same
``ContentEncoder`` configuration as training (``meta["content_backend"]`` records it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from core.errors import ArtifactError
from models.artifacts import load_state, new_version, save_state, verify, write_manifest
from models.index import EXACT_THRESHOLD, ItemIndex
from models.two_tower import TwoTowerConfig, TwoTowerModel
from models.two_tower_train import pad_histories

F32 = npt.NDArray[np.float32]
KIND = "two_tower"


class TwoTowerServing:
    def __init__(self, model: TwoTowerModel, item_ids: Sequence[str], version: str | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        if len(item_ids) != model.cfg.n_items:
            raise ValueError(f"{len(item_ids)} item ids for a model of {model.cfg.n_items} items")
        self.model = model.eval()
        self.item_ids = list(item_ids)
        self.codes = {item: code for code, item in enumerate(self.item_ids, start=1)}
        self.version = version or new_version()
        self.meta = dict(meta or {})

    @property
    def dim(self) -> int:
        return self.model.cfg.dim

    def user_vectors(self, histories: Sequence[Sequence[str]], profile: F32 | None = None,
                     context: F32 | None = None) -> F32:
        """One vector per user from their recent items (oldest first)."""
        codes = [np.array([self.codes[i] - 1 for i in h if i in self.codes], np.int64) for h in histories]
        with torch.inference_mode():
            vecs = self.model.user_vectors(pad_histories(codes, self.model.cfg.max_len),
                                           _tensor(profile), _tensor(context))
        return vecs.numpy().astype(np.float32)

    def item_vectors(self, item_ids: Sequence[str] | None = None, content: F32 | None = None) -> F32:
        """Vectors for ``item_ids`` (all known items if None); unknown ids need ``content`` rows."""
        ids = self.item_ids if item_ids is None else list(item_ids)
        known = np.array([i in self.codes for i in ids], bool)
        out = np.zeros((len(ids), self.dim), np.float32)
        with torch.inference_mode():
            if known.any():
                codes = torch.tensor([self.codes[i] for i, k in zip(ids, known, strict=True) if k])
                out[known] = self.model.item_vectors(codes).numpy()
        if (~known).any():
            if content is None:
                raise KeyError(f"{int((~known).sum())} unknown item ids and no content vectors given")
            out[~known] = self.new_item_vectors(np.asarray(content, np.float32)[~known])
        return out

    def new_item_vectors(self, content: F32) -> F32:
        with torch.inference_mode():
            vecs = self.model.item_vectors_from_content(torch.from_numpy(np.asarray(content, np.float32)))
        return vecs.numpy().astype(np.float32)

    def build_index(self, exact_threshold: int = EXACT_THRESHOLD) -> ItemIndex:
        return ItemIndex.build(self.item_ids, self.item_vectors(), model_version=self.version,
                               exact_threshold=exact_threshold)

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        save_state(directory / "weights.pt", self.model.state_dict())
        (directory / "items.json").write_text(json.dumps(self.item_ids))
        return write_manifest(directory, KIND, self.version, ["weights.pt", "items.json"],
                              config=self.model.cfg.to_dict(), meta=self.meta,
                              model_version=self.version, item_count=len(self.item_ids))

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> TwoTowerServing:
        """``mmap``: the weights (the content table above all: items x content_dim floats) stay views
        of the file, shared by every serving process that loads this version."""
        manifest = verify(directory, KIND)
        cfg = TwoTowerConfig(**manifest["config"])
        model = TwoTowerModel(cfg)
        state = load_state(manifest, directory, "weights.pt", mmap=mmap)
        try:
            model.items.content = torch.empty_like(state["items.content"])
            model.load_state_dict(state, assign=mmap)
            item_ids = json.loads((directory / "items.json").read_text())
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{directory}: weights do not fit the config ({exc})") from None
        return cls(model, item_ids, str(manifest["version"]), manifest.get("meta"))


def _tensor(x: F32 | None) -> torch.Tensor | None:
    return None if x is None else torch.from_numpy(np.asarray(x, np.float32))

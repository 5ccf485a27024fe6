"""Pure PyTorch, FAISS and numpy: towers, rankers, re-rankers, bandits, indexes, baselines, metrics.

Entry points used by other areas (see each module's docstring for shapes and examples):

- ``models.content``: ``ContentEncoder(ContentConfig()).encode(texts, categories) -> [n, 416]``
  float32 unit rows (MiniLM text + hashed categories; hashing fallback, logged).
- ``models.two_tower_train``: ``train_two_tower(train_seq, n_items, content, TwoTowerConfig(...),
  TwoTowerTrainConfig(...), validate=None) -> TwoTowerModel``.
- ``models.two_tower_serving``: ``TwoTowerServing(model, item_ids)`` -> ``user_vectors(histories)``,
  ``item_vectors(ids, content=None)``, ``new_item_vectors(content)``, ``build_index()``,
  ``save(dir)`` / ``TwoTowerServing.load(dir)`` (artifact kind ``two_tower``).
- ``models.index``: ``ItemIndex.build(ids, vectors, model_version=...)``, ``search``, ``add``,
  ``save(dir)`` / ``ItemIndex.load(dir)`` (kind ``index``; implements ``core.protocols.VectorIndex``).
- ``models.ranker_train``: ``train_ranker(RankingData, RankerConfig(dense_features=...),
  RankerTrainConfig()) -> MultiTaskRanker``; ``RankingData.from_rows(rows, labels, cfg)``.
- ``models.ranker_serving``: ``RankerServing(model, version, head_weights)`` ->
  ``score_arrays(dense) -> {"click", "deep", "score"}`` over named columns (``feature_names``;
  ``core.protocols.FeatureRanker``), ``save(dir)`` / ``RankerServing.load(dir)`` (kind ``ranker``).
- ``models.item_neighbours``: ``ItemNeighbours.fit(sequences, item_ids)`` -> learned item-to-item
  relations ``cf`` and ``seq``, ``score(relation, recent, k)``; artifact kind ``i2i``.
- ``models.artifacts``: manifest + SHA-256 checks; bad artifacts raise ``core.errors.ArtifactError``.
- ``models.data``: interaction logs, leave-one-out / global time / random splits, loaders;
  ``models.baselines``: Pop, ItemKNN (RecBole's neighbourhood), CoVisit; ``models.metrics``: metrics
  of ranked lists; ``models.synthetic_log``: a plausible large log for the scale benchmark.
  ``streamrec eval`` itself lives in ``funnel.evaluation`` (it scores the funnel that serves).
"""

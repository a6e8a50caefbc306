"""The recommender modality: implicit-feedback recommenders (BPR matrix factorisation,
LightGCN, a two-tower model) trained with the BPR loss. Parts: ``adapter``
(:class:`RecAdapter`, :class:`InteractionSet`: every interaction an example, its user the
subject), ``models``, ``task`` (:func:`make_rec_task`, :class:`RecTask`, :class:`RecForget`),
``scores`` (per-interaction BPR scores and every user's top-K), ``metrics`` (HR/NDCG/Recall@K,
top-K overlap with the reference, unlearning bias, membership inference) and ``defaults``;
the registry entry is in :mod:`unlearnkit.modalities`. LightGCN needs torch-geometric.
See ``docs/recommenders.md``."""

"""The classifier modality: tabular and image classifiers (any ``nn.Module`` mapping an
input batch to logits). Parts: ``adapter`` (:class:`ClassifierAdapter`), ``models`` (MLP,
SmallCNN, ResNet-18, linear), ``task`` (:func:`make_task`, :class:`ClassifierTask`),
``scores`` and ``metrics``; the registry entry is in :mod:`unlearnkit.modalities`."""

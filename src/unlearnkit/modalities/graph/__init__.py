"""The graph modality: graph neural networks (PyTorch Geometric layers) on one graph, for
node classification and link prediction. Parts: ``adapter`` (:class:`GraphAdapter`,
:class:`GraphExampleSet`: every node, edge and node-feature vector an example), ``models``
(GCN, GAT, GIN, GraphSAGE), ``task`` (:func:`make_graph_task`, :class:`GraphTask`,
:class:`GraphForget`), ``scores`` (everything scored on the retain graph), ``metrics``
(GNNDelete's DT/DF AUROC-AUPRC, MI ratio, node accuracy and gaps) and ``defaults``; the
registry entry is in :mod:`unlearnkit.modalities`. Needs the ``graph`` extra
(torch-geometric), imported only when a model is built. See ``docs/graph.md``."""

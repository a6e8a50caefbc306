"""Causal-LM metrics (registered by ``evaluation.py`` until it is split)."""

from . import evaluation  # noqa: F401

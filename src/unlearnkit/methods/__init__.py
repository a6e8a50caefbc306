"""Methods layer: the loss library, the registry, and one module per method.

Every module in this package is imported here so its ``@register`` runs; a new
method is a new file.
"""

import importlib
import pkgutil

from .base import METHODS, LoopParams, Method, UnlearnResult, get_method, hp, list_methods, register

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "losses"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS", "Method", "LoopParams", "UnlearnResult", "get_method", "list_methods", "register", "hp"]

"""Optional dependencies: what only some read models need (pyarrow for Parquet, matplotlib for
plots), imported when used, with one clear error naming the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL", "MissingExtra", "require"]

INSTALL = "pip install 'eventsrc[analytics]'"


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says how to install it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"pyarrow"``) for ``purpose``, or raise MissingExtra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        raise MissingExtra(
            f"{purpose} needs {top}, which is not installed: install the analytics extra "
            f"({INSTALL})"
        ) from exc

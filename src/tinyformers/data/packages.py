"""Data shipped inside installed packages: found by path, never imported (some carry old code or pinned deps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_path(package: str, *parts: str) -> Path | None:
    """``<site-packages>/<package>/<parts...>`` if the package is installed and the path exists, else None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.exists() else None

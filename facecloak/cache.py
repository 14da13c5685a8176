"""Where facecloak keeps downloaded models, converted weights and fetched data sets."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FACECLOAK_CACHE`` or ``$XDG_CACHE_HOME/facecloak`` (default ``~/.cache/facecloak``).

    Never inside site-packages: an installed package directory may be read-only and is shared.
    """
    env = os.environ.get("FACECLOAK_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facecloak"

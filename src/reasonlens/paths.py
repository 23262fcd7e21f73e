"""Where reasonlens keeps things it can rebuild (converted checkpoints, assembled files)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The cache root: `$REASONLENS_CACHE`, else the platform's user cache dir."""
    root = os.environ.get("REASONLENS_CACHE")
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("reasonlens"))
    path.mkdir(parents=True, exist_ok=True)
    return path

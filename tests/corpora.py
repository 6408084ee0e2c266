"""Tests that need the real corpora skip, naming them, where the data root lacks them.

CI has the corpora: there (``CI=true``) such a skip is turned into a failure by the hook
in ``tests/conftest.py``, so a data-dependent test can never pass by not running.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import DATA_ENV, resolve_data_root
from training.data.catalogue import corpus_of

SKIP_PREFIX = "needs the corpora"


def require_corpora(*names: str) -> Path:
    """The data root, or a skip naming each missing corpus file and where to get it."""
    root = resolve_data_root()
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        wanted: dict[str, str] = {}
        for name in missing:
            corpus = corpus_of(name)
            label = corpus.name if corpus else name
            wanted.setdefault(label, f"{label} ({corpus.source if corpus else 'unknown source'})")
        pytest.skip(
            f"{SKIP_PREFIX} {', '.join(wanted.values())} under the data root {root} "
            f"(missing: {', '.join(missing)}); set {DATA_ENV}, see README 'Training data'"
        )
    return root

"""Where the corpora are: the one rule every command that reads them follows.

Corpora are named relative to a *data root*, so that a recipe, a run, a shipped model or
a story set never carries one machine's paths. The root is, first to last: the ``--data``
flag, the ``KHABAR_DATA`` environment variable, a recipe's ``data_root``, else
``../shared/data`` beside the repository (this project's own layout; an installed wheel
has no such directory, so its users pass ``--data`` or set ``KHABAR_DATA``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "KHABAR_DATA"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def resolve_data_root(flag: Path | str | None = None, configured: Path | str | None = None) -> Path:
    """The data root, made absolute.

    First to last: ``flag`` (``--data``), ``$KHABAR_DATA``, ``configured`` (the recipe's
    ``data_root``), :data:`DEFAULT_DATA_ROOT`.
    """
    for candidate in (flag, os.environ.get(DATA_ENV) or None, configured):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return DEFAULT_DATA_ROOT

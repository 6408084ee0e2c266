"""Writing a model directory whole: into a temporary directory beside it, renamed into place.

``khabar export`` and ``khabar ship`` build every file of a model in a staging directory
next to the target and only then put it where the target was. An interrupted or failed
run leaves no half-written model and no staging directory, and a model that is replaced
(``--force``, a re-ship in place) stays as it was until the new one is complete.
Imports no torch: ``ship`` runs with the serve extra alone.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """A new empty directory beside ``target`` that replaces it when the block succeeds.

    Whatever ``target`` held is removed only once the new directory is complete. If the
    block raises (or is interrupted), the staging directory is removed and ``target`` is
    left as it was.

    Yields:
        The staging directory to write the model into.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        yield staging
        _replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(staging: Path, target: Path) -> None:
    """Put ``staging`` where ``target`` is; the old ``target`` goes only after the rename."""
    if not target.exists() and not target.is_symlink():
        staging.rename(target)
        return
    retired = staging.with_name(f"{staging.name}.replaced")
    target.rename(retired)
    try:
        staging.rename(target)
    except BaseException:
        retired.rename(target)
        raise
    if retired.is_dir() and not retired.is_symlink():
        shutil.rmtree(retired, ignore_errors=True)
    else:
        retired.unlink()

"""``khabar ship``: copy an exported model with only its default ONNX variant, e.g. into git.

Copying files needs no torch: this module imports only the runtime and the recipe
code, so a serve-only install can ship. The shipped ``khabar.json`` records the sha256
of every file it holds and names its training data relative to the data root.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from serving.errors import ConfigError
from serving.metadata import CARD_NAME, ModelMetadata
from training.card import card_notes, write_card
from training.config import config_of_model, portable_training_record, resolve_data_root
from training.staging import staged_directory

logger = logging.getLogger(__name__)


def run_ship(source: Path, target: Path, data_root: Path | None = None) -> ModelMetadata:
    """Copy ``source`` to ``target`` with only its default variant; record file sums.

    Every recorded metric (fp32 figures included) stays in the metadata and card. The
    source's files are checked against the sums it records before anything is copied;
    ``source`` and ``target`` may be the same directory (a model is re-shipped in place).

    Args:
        source: An exported (or shipped) model directory.
        target: The directory to write; replaced as a whole once the copy is complete.
        data_root: The ``--data`` flag: the root that older records' absolute data paths
            are made relative to.

    Raises:
        ModelLoadError: The source is not a model, or one of its files is corrupt.
        ConfigError: The recorded config is invalid, or names card notes that are missing
            while the source has no card to keep (from a wheel, which holds no configs/,
            the source's card is kept as it is).
    """
    metadata = ModelMetadata.load(source)
    variant = metadata.default_variant
    files = {variant: metadata.onnx_files[variant]}
    shipped = metadata.model_copy(update={"onnx_files": files})
    names = shipped.runtime_files
    for name in names:
        metadata.verified_file(source, name)
    root = resolve_data_root(data_root)
    training = portable_training_record(metadata.training, root)
    shipped = shipped.model_copy(update={"training": training})
    config = config_of_model(shipped.training, str(source), data_root=root)
    try:
        notes: str | None = card_notes(config)
    except ConfigError as exc:  # e.g. shipping from an installed wheel, which has no configs/
        if not (source / CARD_NAME).is_file():
            raise
        logger.warning("%s; the source's %s is copied as it is", exc, CARD_NAME)
        notes = None

    with staged_directory(target) as staging:
        for name in names:
            shutil.copy2(source / name, staging / name)
        shipped = shipped.with_file_hashes(staging)
        shipped.save(staging)
        if notes is None:
            shutil.copy2(source / CARD_NAME, staging / CARD_NAME)
        else:
            write_card(staging, shipped, notes)
    return shipped

"""``khabar data check``: is every corpus a recipe needs under the data root, unchanged?

Each file is compared with the sha256 that the shipped model records for it, i.e. the
exact file it was trained and evaluated on; the catalogue says where to get what is
missing and under which licence.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from serving.metadata import sha256_of_file
from training.config import KhabarConfig
from training.data.catalogue import Corpus, corpus_of
from training.data.corpora import data_names, expand

Status = Literal["ok", "found", "missing", "differs"]


@dataclass(frozen=True)
class DataFile:
    """One file (or an unmatched pattern) a recipe needs, and what the data root holds."""

    name: str
    status: Status
    expected: str | None
    actual: str | None

    @property
    def corpus(self) -> Corpus | None:
        """The catalogued corpus this file belongs to, if any."""
        return corpus_of(self.name)


def complete(checked: list[DataFile]) -> bool:
    """Every file is there and none differs from its recorded sum."""
    return all(item.status in ("ok", "found") for item in checked)


def check_data(config: KhabarConfig, expected: dict[str, str]) -> list[DataFile]:
    """Every file the recipe reads, found or missing, against the recorded sums.

    Args:
        config: The recipe (its data root says where to look).
        expected: sha256 by name under the data root, as a model records them.

    Returns:
        One entry per file, in the recipe's order; a glob pattern stands for the files
        it matches plus every recorded file it should match.
    """
    checked: list[DataFile] = []
    for pattern in data_names(config, with_test=True):
        found = expand(config, pattern)
        recorded = [name for name in expected if fnmatch.fnmatchcase(name, pattern)]
        names = sorted(set(found) | set(recorded))
        if not names:
            checked.append(DataFile(pattern, "missing", None, None))
            continue
        for name in names:
            digest = expected.get(name)
            if name not in found:
                checked.append(DataFile(name, "missing", digest, None))
                continue
            actual = sha256_of_file(found[name])
            if digest is None:  # there, but nothing to compare it with
                status: Status = "found"
            else:
                status = "ok" if actual == digest else "differs"
            checked.append(DataFile(name, status, digest, actual))
    return checked


def render(checked: list[DataFile], config: KhabarConfig) -> str:
    """The report ``khabar data check`` prints: per corpus, its licence, source and files."""
    lines = [f"data root: {config.root}"]
    corpora: dict[str, list[DataFile]] = {}
    for item in checked:
        corpora.setdefault(item.corpus.name if item.corpus else "other", []).append(item)
    for name, items in corpora.items():
        corpus = items[0].corpus
        lines.append("")
        if corpus is not None:
            lines.append(f"{corpus.name} -> {corpus.directory}/")
            lines.append(f"  licence: {corpus.licence}")
            lines.append(f"  source:  {corpus.source}")
            lines.append(f"  format:  {corpus.layout}")
        else:
            lines.append(f"{name} (not in the catalogue)")
        for item in items:
            digest = item.expected or "(no recorded sha256)"
            lines.append(f"  {item.status:<10} {item.name}  sha256 {digest}")
    good = sum(item.status in ("ok", "found") for item in checked)
    lines.append("")
    lines.append(f"{good} of {len(checked)} files found, none differing from its recorded sha256")
    lines.append(
        "status: ok = matches the sha256 the model records; found = there, none recorded; "
        "missing; differs = not the file the model was trained or evaluated on"
    )
    return "\n".join(lines)

"""Names known everywhere: the gazetteer shipped in ``serving/data/``.

Two files, one ``LABEL<TAB>name`` per line (``#`` starts a comment):

- ``gazetteer_cldr.tsv``: Arabic names of countries, regions and cities from the
  Unicode CLDR (Unicode License v3), written by ``python -m tools.build_gazetteer``;
- ``gazetteer_extra.tsv``: written by hand for this project: capitals and cities of
  the news that CLDR lacks, organisations, and leaders in the news; and, labelled
  ``HEAD``, the nouns that begin the names of organisations, events and places
  (``حركة``, ``بطولة``, ``مجلس``): a name of several words that starts with one is known.

Only clean-name decisions read it (:mod:`serving.names`): a clitic comes off a mention
when what is left is a known name, and a mention that is itself known stays whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from serving.errors import ModelLoadError
from serving.normalise import NormaliserSettings, normalised_text

DATA_DIR = Path(__file__).resolve().parent / "data"
GAZETTEER_FILES = ("gazetteer_cldr.tsv", "gazetteer_extra.tsv")
LABELS = frozenset({"PER", "ORG", "LOC", "MISC"})
HEAD = "HEAD"
_FOLD_SETTINGS = NormaliserSettings(unify_letters=True, unify_digits=True)


def fold(text: str) -> str:
    """Text for comparing names: no marks, alef/hamza forms, ta marbuta and alef maqsura unified.

    Only for comparing; a name keeps its letters as written.

    >>> fold("إسرائيل") == fold("اسرائيل"), fold("غزة") == fold("غزه")
    (True, True)
    """
    return " ".join(normalised_text(text, _FOLD_SETTINGS).replace("_", " ").split())


@dataclass(frozen=True)
class Gazetteer:
    """Folded names with their labels; ``name in gazetteer`` tests a folded name.

    ``heads`` holds the folded nouns that begin names (without the article).
    """

    labels: dict[str, str]
    heads: frozenset[str] = frozenset()

    def __contains__(self, folded: object) -> bool:
        """Whether the folded name is in the gazetteer."""
        return folded in self.labels

    def __len__(self) -> int:
        """Number of distinct folded names."""
        return len(self.labels)

    @classmethod
    def from_names(cls, entries: Iterable[tuple[str, str]]) -> Gazetteer:
        """A gazetteer from ``(label, name)`` pairs; the first label of a name wins."""
        labels: dict[str, str] = {}
        heads: set[str] = set()
        for label, name in entries:
            key = fold(name)
            if not key:
                continue
            if label == HEAD:
                heads.add(key)
            else:
                labels.setdefault(key, label)
        return cls(labels=labels, heads=frozenset(heads))

    @classmethod
    def load(cls, paths: Iterable[Path]) -> Gazetteer:
        """Read gazetteer files.

        Raises:
            ModelLoadError: A file is missing or has a malformed line.
        """
        return cls.from_names(entry for path in paths for entry in read_entries(path))


def read_entries(path: Path) -> list[tuple[str, str]]:
    """The ``(label, name)`` pairs of one gazetteer file.

    Raises:
        ModelLoadError: The file is missing or a line is not ``LABEL<TAB>name``.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelLoadError(f"cannot read gazetteer {path}: {exc.strerror or exc}") from exc
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        label, tab, name = line.partition("\t")
        if not tab or (label not in LABELS and label != HEAD) or not name.strip():
            raise ModelLoadError(f"{path}:{number}: expected LABEL<TAB>name, got {line!r}")
        entries.append((label, name.strip()))
    return entries


@lru_cache(maxsize=1)
def default_gazetteer() -> Gazetteer:
    """The gazetteer shipped with the package, read once."""
    return Gazetteer.load(DATA_DIR / name for name in GAZETTEER_FILES)

"""Who and what an article is about: mentions grouped into entities, ranked by salience.

Each mention first gets a clean name (:mod:`serving.names`). Names are compared as
folded words (hamza/alef, ta marbuta, ya unified; a leading article ``ال`` ignored, so
``الدولار`` and ``دولار`` match). Mentions join one group when their names are the
same words, whatever their labels (the model may call one name PER once and LOC
once), or when one name is a whole-word prefix or suffix of the other, or drops only
middle words of it, and one of the short name's labels is the group's label
(``بوتين`` and ``فلاديمير بوتين``; ``دييغو مارادونا`` and ``دييغو أرماندو مارادونا``).
Names are taken longest first, so a short name meets every full name before it is
placed; one that fits two groups (``محمد`` beside ``محمد صلاح`` and ``محمد شريف``)
joins neither and stands alone.

**Salience** says how much the article is about a group. Each mention weighs
``TITLE_WEIGHT`` (3) in the title, ``LEAD_WEIGHT`` (2) in the lead and 1 elsewhere;
a group's salience is its mentions' weight over the weight of all mentions, so the
saliences of an article add up to 1. The title is the first line when the text has
more than one line and the first is at most ``MAX_TITLE_CHARS`` characters; the lead
is the first ``LEAD_CHARS`` characters after it. Groups come most salient first,
ties in order of first mention.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from serving.gazetteer import Gazetteer
from serving.names import clean_names, name_tokens
from serving.spans import Entity

TITLE_WEIGHT = 3.0
LEAD_WEIGHT = 2.0
BODY_WEIGHT = 1.0
MAX_TITLE_CHARS = 200
LEAD_CHARS = 300
_HAMZA_FORMS = frozenset("أإآؤئء")

Key = tuple[str, ...]


@dataclass(frozen=True)
class EntityGroup:
    """Mentions of one entity in one article.

    ``mentions`` are indices into the article's ``entities``; ``first`` is the start
    offset of the first of them in the text sent.
    """

    name: str
    label: str
    mentions: tuple[int, ...]
    first: int
    salience: float

    @property
    def count(self) -> int:
        """Number of mentions."""
        return len(self.mentions)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, salience rounded for output."""
        return {
            "name": self.name,
            "label": self.label,
            "mentions": list(self.mentions),
            "count": self.count,
            "first": self.first,
            "salience": round(self.salience, 4),
        }


@dataclass(frozen=True)
class ArticleParts:
    """Where the title ends and the lead ends, as offsets into the text."""

    title_end: int
    lead_end: int

    @classmethod
    def of(cls, text: str) -> ArticleParts:
        """Find the title (a short first line) and the lead (what follows it)."""
        title_end = 0
        line_break = text.find("\n")
        if 0 < line_break <= MAX_TITLE_CHARS and text[:line_break].strip():
            title_end = line_break
        body_start = title_end
        while body_start < len(text) and text[body_start].isspace():
            body_start += 1
        return cls(title_end=title_end, lead_end=body_start + LEAD_CHARS)

    def weight(self, start: int) -> float:
        """Weight of a mention starting at ``start``."""
        if start < self.title_end:
            return TITLE_WEIGHT
        if start < self.lead_end:
            return LEAD_WEIGHT
        return BODY_WEIGHT


@dataclass
class _Group:
    label: str
    keys: list[Key] = field(default_factory=list)


def _is_part(short: Key, long: Key) -> bool:
    """Whether ``short`` is a word prefix or suffix of ``long``, or drops only middle words."""
    size = len(short)
    if size >= len(long):
        return False
    if long[:size] == short or long[-size:] == short:
        return True
    # دييغو مارادونا in دييغو أرماندو مارادونا: same first and last word, the rest in order.
    if size < 2 or short[0] != long[0] or short[-1] != long[-1]:
        return False
    inner = iter(long[1:-1])
    return all(word in inner for word in short[1:-1])


def _majority(labels: Sequence[str]) -> str:
    """Most frequent label; a tie goes to the one seen first."""
    counts = Counter(labels)
    best = max(counts.values())
    return next(label for label in labels if counts[label] == best)


def _key(entity: Entity) -> Key:
    return name_tokens(entity.name) or name_tokens(entity.text) or (entity.text,)


def group_entities(entities: Sequence[Entity], text: str) -> list[EntityGroup]:
    """Group an article's named mentions (see the module docstring for the rules).

    Args:
        entities: The article's mentions in text order, each with its clean ``name``.
        text: The article as sent, for the title and lead of salience.

    Returns:
        The groups, most salient first; every mention is in exactly one.
    """
    by_key: dict[Key, list[int]] = {}
    for index, entity in enumerate(entities):
        by_key.setdefault(_key(entity), []).append(index)
    key_labels = {key: [entities[i].label for i in indices] for key, indices in by_key.items()}
    groups: list[_Group] = []
    for key in sorted(by_key, key=lambda k: (-len(k), -len(" ".join(k)), by_key[k][0])):
        fits = [
            group
            for group in groups
            if group.label in key_labels[key] and any(_is_part(key, other) for other in group.keys)
        ]
        if len(fits) == 1:
            fits[0].keys.append(key)
        else:
            groups.append(_Group(label=_majority(key_labels[key]), keys=[key]))

    parts = ArticleParts.of(text)
    weights = [parts.weight(entity.start) for entity in entities]
    total = sum(weights) or 1.0
    result = []
    for group in groups:
        mentions = tuple(sorted(i for key in group.keys for i in by_key[key]))
        result.append(
            EntityGroup(
                name=_fullest_name([entities[i] for i in mentions]),
                label=_majority([entities[i].label for i in mentions]),
                mentions=mentions,
                first=entities[mentions[0]].start,
                salience=sum(weights[i] for i in mentions) / total,
            )
        )
    return sorted(result, key=lambda group: (-group.salience, group.first))


def _fullest_name(mentions: Sequence[Entity]) -> str:
    """The name with the most words, then letters, then hamzas written, then uses."""
    uses = Counter(entity.name for entity in mentions)
    best = min(
        range(len(mentions)),
        key=lambda i: (
            -len(mentions[i].name.split()),
            -len(mentions[i].name),
            -sum(char in _HAMZA_FORMS for char in mentions[i].name),
            -uses[mentions[i].name],
            i,
        ),
    )
    return mentions[best].name


def name_and_group(
    text: str, entities: Sequence[Entity], gazetteer: Gazetteer | None = None
) -> tuple[list[Entity], list[EntityGroup]]:
    """Give every mention its clean name, then group them; one call for CLI, API and batch.

    Args:
        text: The article as sent.
        entities: Its mentions in text order.
        gazetteer: Names known everywhere (default: the one the package ships).

    Returns:
        The mentions with ``name`` set (spans unchanged) and their groups.
    """
    names = clean_names(
        [entity.text for entity in entities], [entity.label for entity in entities], text, gazetteer
    )
    named = [replace(entity, name=name) for entity, name in zip(entities, names, strict=True)]
    return named, group_entities(named, text)

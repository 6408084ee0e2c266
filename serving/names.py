"""A clean name for each entity mention: clitics off, marks off, letters as written.

Arabic attaches conjunctions and prepositions to the next word, so the model's
mentions come as ``بباريس``, ``وأوكرانيا`` or ``للأمم المتحدة``. Stripping every
leading ``و``/``ب``/``ل`` would cut real names (``وارسو``, ``بيروت``, ``لبنان``), so a
clitic comes off only when what is left is a *known name*:

- a place, organisation or person of the gazetteer the package ships
  (:mod:`serving.gazetteer`), compared after folding hamza/alef, ta marbuta and ya;
- another mention of the same article, or a whole-word prefix or suffix of one
  (``بوتين`` of ``فلاديمير بوتين``), the article ``ال`` aside (``بغوطة``, ``الغوطة الشرقية``);
- for a name of several words: one whose first word is a known name
  (``لنيوكاسل يونايتد``), or a noun that begins names of organisations, events or
  places (``وحركة الجهاد الإسلامي``, ``ببطولة العالم``; listed in the gazetteer, never
  for people), or the same words standing alone elsewhere in the text.

A mention that is itself in the gazetteer is never cut. Two spellings need no
evidence: a clitic written apart with tatweel (``بـ``, ``لـ``), which the writer
already split, and ``و``/``ف``/``ب``/``ل`` before a hamza on alef (``وإيلات``,
``بأجدير``), which begins no name (names written ``وا``/``با`` are left alone). The name
keeps hamza forms as written; only diacritics, tatweel, invisible marks and extra
spaces go. ``start``/``end``/``text`` of a mention never change.

>>> clean_names(["بباريس", "باريس", "وارسو"])
['باريس', 'باريس', 'وارسو']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from serving.decode import WordSpan
from serving.gazetteer import Gazetteer, default_gazetteer, fold
from serving.normalise import NormaliserSettings, normalised_text

# Proclitics that may stand before a name, alone or as conjunction + preposition; tried
# shortest first, so ``ولبنان`` becomes ``لبنان`` (known) before ``بنان`` is considered.
SINGLE_CLITICS = ("و", "ف", "ب", "ل", "ك")
DOUBLE_CLITICS = ("وب", "ول", "وك", "فب", "فل", "فك")
# li- before the article drops the article's alef: لل + X is ل + ال + X.
ARTICLE_CLITICS = ("لل", "ولل", "فلل")
ARTICLE = "ال"
# Letters a stem must keep after a clitic comes off.
MIN_STEM_LETTERS = 2
_SEPARATED_CLITIC = re.compile(r"^\s*([وفبلك]{1,2})\u0640+\s*")
# و ف ب ل before a hamza on alef: no name of the press begins so (كأس does, hence no ك).
_CLITIC_BEFORE_HAMZA = re.compile(r"^[وفبل](?=[أإآ]\w{2})")

_NAME_SETTINGS = NormaliserSettings(unify_digits=False)


def surface(text: str) -> str:
    """Text without diacritics, tatweel or invisible marks; spaces and hashtag ``_`` collapsed.

    >>> surface("مُحَمَّـد  صلاح"), surface("الاتحاد_الأوروبي")
    ('محمد صلاح', 'الاتحاد الأوروبي')
    """
    return " ".join(normalised_text(text, _NAME_SETTINGS).replace("_", " ").split())


def strip_candidates(name: str) -> list[str]:
    """Names left after taking a proclitic off the first word, most likely first.

    >>> strip_candidates("للأمم المتحدة")[:2]
    ['لأمم المتحدة', 'الأمم المتحدة']
    """
    first, _, rest = name.partition(" ")
    tail = f" {rest}" if rest else ""
    candidates: list[str] = []
    for clitic in SINGLE_CLITICS:
        if first.startswith(clitic) and len(first) - len(clitic) >= MIN_STEM_LETTERS:
            candidates.append(first[len(clitic) :] + tail)
    for clitic in ARTICLE_CLITICS:
        if first.startswith(clitic) and len(first) - len(clitic) >= MIN_STEM_LETTERS:
            candidates.append(ARTICLE + first[len(clitic) :] + tail)
    for clitic in DOUBLE_CLITICS:
        if first.startswith(clitic) and len(first) - len(clitic) >= MIN_STEM_LETTERS:
            candidates.append(first[len(clitic) :] + tail)
    return candidates


def name_kind(label: str | None) -> str | None:
    """People apart from the rest: ``PER``, ``NAME`` (places, organisations, other) or unknown.

    A clitic comes off a person's name only for a known person, and off a place's only
    for a known place, organisation or other name: ``كلاوس`` stays whole though ``لاوس``
    is a country. Places and organisations share a kind because the same name is often
    both (a country and its team or government).
    """
    if label is None:
        return None
    return "PER" if label == "PER" else "NAME"


@dataclass(frozen=True)
class KnownNames:
    """What counts as a known name inside one article: word forms with their kinds."""

    gazetteer: Gazetteer
    forms: dict[str, frozenset[str | None]]
    text: str

    @cached_property
    def folded_text(self) -> str:
        """The article folded, padded with spaces; only names of several words need it."""
        return f" {fold(self.text)} " if self.text else ""

    @classmethod
    def of_article(
        cls,
        mentions: Sequence[str],
        labels: Sequence[str | None] | None = None,
        text: str = "",
        gazetteer: Gazetteer | None = None,
    ) -> KnownNames:
        """Known names of an article: its mentions (and their word affixes) and the gazetteer.

        Args:
            mentions: The article's mention texts as sent.
            labels: The mentions' labels, in the same order (default: unknown).
            text: The article, for names of several words that also stand alone in it.
            gazetteer: Names known everywhere (default: the one the package ships).
        """
        kinds: dict[str, set[str | None]] = {}
        labels = list(labels) if labels is not None else [None] * len(mentions)
        for mention, label in zip(mentions, labels, strict=True):
            words = name_tokens(mention)
            kind = name_kind(label)
            for size in range(1, len(words) + 1):
                kinds.setdefault(" ".join(words[:size]), set()).add(kind)
                kinds.setdefault(" ".join(words[-size:]), set()).add(kind)
        return cls(
            gazetteer=gazetteer if gazetteer is not None else default_gazetteer(),
            forms={form: frozenset(found) for form, found in kinds.items()},
            text=text,
        )

    def knows(self, name: str, label: str | None = None) -> bool:
        """Whether ``name`` (not yet folded) is a known name of the kind of ``label``."""
        key = fold(name)
        kind = name_kind(label)
        listed = self.gazetteer.labels.get(key)
        if listed is not None and (kind is None or name_kind(listed) == kind):
            return True
        found = self.forms.get(" ".join(name_tokens(name)))
        if found is not None and (kind is None or None in found or kind in found):
            return True
        if " " not in key:
            return False
        if kind != "PER" and name_tokens(name)[0] in self.gazetteer.heads:
            return True
        return bool(self.text) and _stands_alone(key, self.folded_text)


def _stands_alone(phrase: str, folded_text: str) -> bool:
    """Whether ``phrase`` occurs in ``folded_text`` with no letter glued before or after it."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", folded_text) is not None


def clean_name(text: str, known: KnownNames, label: str | None = None) -> str:
    """The clean name of one mention (see the module docstring for the rules).

    Args:
        text: The mention exactly as it appears in the text sent.
        known: The article's known names, from :meth:`KnownNames.of_article`.
        label: The mention's entity type, if known.
    """
    separated = _SEPARATED_CLITIC.match(text)
    if separated and text[separated.end() :].strip():
        return surface(text[separated.end() :])
    name = surface(text)
    if not name or fold(name) in known.gazetteer:
        return name
    for candidate in strip_candidates(name):
        first, space, _ = candidate.partition(" ")
        if known.knows(candidate, label) or (space and known.knows(first, label)):
            return candidate
    if _CLITIC_BEFORE_HAMZA.match(name):
        return name[1:]
    return name


def clean_names(
    mentions: Sequence[str],
    labels: Sequence[str | None] | None = None,
    text: str = "",
    gazetteer: Gazetteer | None = None,
) -> list[str]:
    """Clean names of all mentions of one article, in order.

    Args:
        mentions: The mention texts as sent.
        labels: Their entity types, in the same order (default: unknown).
        text: The article (optional): names of several words found alone in it are known.
        gazetteer: Names known everywhere (default: the one the package ships).
    """
    labels = list(labels) if labels is not None else [None] * len(mentions)
    known = KnownNames.of_article(mentions, labels, text, gazetteer)
    return [
        clean_name(mention, known, label) for mention, label in zip(mentions, labels, strict=True)
    ]


@lru_cache(maxsize=4096)
def name_tokens(name: str) -> tuple[str, ...]:
    """The folded words of a name without the article, the unit groups are matched on.

    ``الدولار`` and ``دولار``, ``الاتحاد`` and ``اتحاد جدة`` then share words; the article
    stays when fewer than three letters would be left (``الله``, ``الين``).

    >>> name_tokens("ميليشيات الحوثي")
    ('ميليشيات', 'حوثي')
    """
    return tuple(_without_article(word) for word in fold(name).split())


def _without_article(word: str) -> str:
    rest = word.removeprefix(ARTICLE)
    return rest if len(rest) >= 3 and rest != word else word


def join_known_names(
    spans: Sequence[WordSpan], words: Sequence[str], gazetteer: Gazetteer | None = None
) -> list[WordSpan]:
    """Join back-to-back mentions of one label when together they are one known name.

    The tagger sometimes opens a new mention inside a long name (``رجب طيب`` +
    ``أردوغان``): its training data splits some names so. Two or more mentions that
    follow each other word for word, share a label, and together spell a name the
    gazetteer lists with that label become one mention; its score is the mean over
    its words, as for any mention. Names the gazetteer does not know stay as tagged.
    """
    gazetteer = gazetteer or default_gazetteer()
    joined: list[WordSpan] = []
    index = 0
    while index < len(spans):
        span = spans[index]
        best_end = index
        for end in range(index + 1, len(spans)):
            previous, current = spans[end - 1], spans[end]
            if current.label != span.label or current.first != previous.last + 1:
                break
            name = fold(" ".join(words[span.first : current.last + 1]))
            if gazetteer.labels.get(name) == span.label:
                best_end = end
        if best_end == index:
            joined.append(span)
        else:
            parts = spans[index : best_end + 1]
            n_words = sum(p.last - p.first + 1 for p in parts)
            score = sum(p.score * (p.last - p.first + 1) for p in parts) / n_words
            joined.append(WordSpan(span.label, span.first, parts[-1].last, float(score)))
        index = best_end + 1
    return joined


def split_known_pairs(
    spans: Sequence[WordSpan], words: Sequence[str], gazetteer: Gazetteer | None = None
) -> list[WordSpan]:
    """Split a mention that is two known names joined by ``و`` (``بوتين وزيلينسكي``).

    The tagger sometimes runs one mention over two names and the conjunction between
    them, which Arabic writes as a prefix of the second name. A mention splits before a
    word that begins with ``و`` only when the words before it, and that word without
    its ``و`` with the words after it, are each a name the gazetteer lists with the
    mention's label; both parts keep the mention's score. Anything less certain
    (``وليد``, unknown names) stays as tagged.
    """
    gazetteer = gazetteer or default_gazetteer()
    out: list[WordSpan] = []
    for span in spans:
        cut = None
        for middle in range(span.first + 1, span.last + 1):
            word = words[middle]
            if not word.startswith("و") or len(word) < 3:
                continue
            before = fold(" ".join(words[span.first : middle]))
            after = fold(" ".join([word[1:], *words[middle + 1 : span.last + 1]]))
            if gazetteer.labels.get(before) == span.label == gazetteer.labels.get(after):
                cut = middle
                break
        if cut is None:
            out.append(span)
        else:
            out.append(WordSpan(span.label, span.first, cut - 1, span.score))
            out.append(WordSpan(span.label, cut, span.last, span.score))
    return out

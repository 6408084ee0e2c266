"""Topic training data: corpus readers, labelling with masking, de-duplication and splits.

The topic head is multi-label and every label of an example is ``1.0``, ``0.0`` or
``None``. ``None`` means *unknown*: the loss masks it, it is never read as a negative.
Missing labels are the normal case, not an exception, because the corpora disagree on
what they annotate:

* ANT v2.1 gives one site section per article. The five section labels are therefore all
  known (the primary one is ``1.0``, the others ``0.0``). Whether a politics article is
  about the Middle East is known only for the sites that file Middle East news in its own
  section; elsewhere it is ``None``.
* Story labels (``middle_east_conflict``, ``russia_ukraine``) are not annotated anywhere
  in ANT. They come from the keyword rules in ``configs/stories.yaml``, which answer
  ``None`` whenever the evidence is only partial.
* FIGNEWS 2024 posts are all about the Israel–Gaza war and say nothing else, so they are
  positives for the conflict story and the region and unknown for everything else.

De-duplication happens before splitting and the split is a pure function of the text, so
a text (and every copy of it) lands in exactly one split whatever order the files are
read in and whatever else is in the corpus.

The label set, the ANT section map and the split fractions are the recipe's
(``training/config.py``, ``configs/default.yaml``): every reader here takes them as
arguments and keeps no copy of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from serving.errors import ConfigError, DataError
from training.data.story_rules import LabelValue, StoryRules, check_labels

logger = logging.getLogger(__name__)

ANT_REGION_SECTIONS: Mapping[str, float] = MappingProxyType(
    {"middleEast": 1.0, "internationalNews": 0.0}
)
"""For a source whose sections tell the Middle East apart (the recipe's
``topics.middle_east_sources``): ANT section -> ``middle_east`` value."""

FIGNEWS_POSITIVE_LABELS: tuple[str, ...] = ("middle_east_conflict", "middle_east")
"""Labels that every FIGNEWS post has; the rest of its labels are unknown."""


@dataclass(frozen=True)
class TopicExample:
    """One training text with a value (or ``None`` = unknown) for every topic label.

    Attributes:
        id: The corpus's own id, kept so that reports and checks can point at a record
            without copying its text.
        text: What the model reads.
        source: The site or corpus the text came from; some labels are only known for
            some sources, and evaluation is broken down by it.
        labels: Every label of the label set -> ``1.0``, ``0.0`` or ``None`` (masked).
        dedup_text: The text that identifies the document for de-duplication and for the
            split, when it is not ``text`` itself. ANT sets it to the article body, so a
            republished article with an edited headline still counts as a copy and
            cannot sit in two splits. ``None`` means ``text``.
    """

    id: str
    text: str
    source: str
    labels: dict[str, LabelValue]
    dedup_text: str | None = field(default=None, repr=False)

    @property
    def key_text(self) -> str:
        """The whitespace-collapsed text used for de-duplication and splitting."""
        return normalise_for_key(self.dedup_text if self.dedup_text is not None else self.text)


def normalise_for_key(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends.

    Copies of an article often differ only in line breaks or doubled spaces; they
    must still be recognised as the same text.
    """
    return " ".join(text.split())


# --------------------------------------------------------------------------- reading


def read_jsonl(
    path: Path, text_fields: Sequence[str], required_fields: Sequence[str] = ()
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every record of a JSON-lines file.

    A corpus with a silently skipped record trains a different model from the one the
    config describes, so every problem stops the run with the file and 1-based line.
    Blank lines carry no record and are passed over.

    Args:
        path: The JSON-lines file.
        text_fields: Fields that must be non-empty strings (the text the model reads).
        required_fields: Further fields that must be present and not null or empty.

    Yields:
        The 1-based line number and the decoded JSON object.

    Raises:
        DataError: The file is missing or unreadable, or a line is not valid UTF-8, not
            a JSON object, or lacks a text or required field.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot open ({error.strerror})") from None
    with handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path}:{line_number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{where}: not valid UTF-8 ({error.reason})") from None
            if line_number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            for name in text_fields:
                value = record.get(name)
                if not isinstance(value, str) or not value.strip():
                    problem = "missing" if value is None else "empty or not a string"
                    raise DataError(f"{where}: text field {name!r} is {problem}")
            for name in required_fields:
                value = record.get(name)
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise DataError(f"{where}: required field {name!r} is missing or empty")
            yield line_number, record


def _join_text(record: Mapping[str, object], text_fields: Sequence[str]) -> str:
    return "\n".join(str(record[name]).strip() for name in text_fields)


# --------------------------------------------------------------------------- corpora


def load_ant(
    paths: Iterable[Path],
    label_names: Sequence[str],
    section_map: Mapping[str, str],
    middle_east_sources: Sequence[str],
    story_rules: StoryRules | None,
    *,
    text_fields: Sequence[str] = ("title", "text"),
    region_label: str = "middle_east",
    region_sections: Mapping[str, float] | None = None,
    dedup_field: str | None = "text",
) -> list[TopicExample]:
    """Read ANT v2.1 shards into labelled examples.

    Args:
        paths: The JSON-lines shards, read in the order given (de-duplication keeps the
            first copy, so the order is part of the recipe).
        label_names: The full label set; every example gets every one as a key.
        section_map: ANT section -> section label. Its distinct values are the section
            labels: the mapped one is ``1.0`` and the others ``0.0``.
        middle_east_sources: Sources whose sections say whether an article is about the
            Middle East. For the others the region label stays ``None``.
        story_rules: Rules for the story labels, or ``None`` to leave stories unknown.
        text_fields: Record fields joined with newlines into the model's text.
        region_label: The label set from ``region_sections``.
        region_sections: ANT section -> region value for ``middle_east_sources``;
            sections not listed (sport, economy, ...) stay ``None`` because a sports
            story can well be about the Middle East. Defaults to
            ``ANT_REGION_SECTIONS``.
        dedup_field: Record field that identifies the document for de-duplication and
            the split; ``None`` uses the model text.

    Raises:
        ConfigError: A mapped, region or story label is not in ``label_names``.
        DataError: A file is missing, or a line is malformed or has an unmapped section.
    """
    region_sections = dict(ANT_REGION_SECTIONS if region_sections is None else region_sections)
    check_labels(section_map.values(), label_names, "ANT section map")
    check_labels([region_label], label_names, "ANT region label")
    if story_rules is not None:
        check_labels(story_rules.labels, label_names, "story rules")
    mapped = set(section_map.values())
    section_labels = [name for name in label_names if name in mapped]
    me_sources = set(middle_east_sources)
    required = ["id", "source", "section"] + ([dedup_field] if dedup_field else [])

    examples: list[TopicExample] = []
    for path in paths:
        count = 0
        for line_number, record in read_jsonl(Path(path), text_fields, required):
            section = record["section"]
            if not isinstance(section, str) or section not in section_map:
                raise DataError(
                    f"{path}:{line_number}: unknown section {section!r}; "
                    f"mapped sections are {', '.join(section_map)}"
                )
            primary = section_map[section]
            labels: dict[str, LabelValue] = dict.fromkeys(label_names)
            for name in section_labels:
                labels[name] = 1.0 if name == primary else 0.0
            source = str(record["source"])
            if source in me_sources and section in region_sections:
                labels[region_label] = float(region_sections[section])
            text = _join_text(record, text_fields)
            if story_rules is not None:
                labels.update(story_rules.apply(text, primary))
            examples.append(
                TopicExample(
                    id=str(record["id"]),
                    text=text,
                    source=source,
                    labels=labels,
                    dedup_text=str(record[dedup_field]) if dedup_field else None,
                )
            )
            count += 1
        logger.debug("read %d ANT articles from %s", count, path)
    logger.info("read %d ANT articles", len(examples))
    return examples


def load_fignews(
    path: Path,
    label_names: Sequence[str],
    *,
    positive_labels: Sequence[str] = FIGNEWS_POSITIVE_LABELS,
    source: str = "fignews",
) -> list[TopicExample]:
    """Read FIGNEWS 2024 posts as positives of the Israel–Gaza war story.

    The posts were collected because they are about that war, so the story and the
    region are known positives; whether a post is politics or economy, or mentions
    anything else, nobody annotated, so those labels are unknown rather than negative.

    Args:
        path: ``gaza-war-posts.jsonl``.
        label_names: The full label set.
        positive_labels: Labels set to ``1.0``; all others are ``None``.
        source: The source name the examples carry.

    Raises:
        ConfigError: A positive label is not in ``label_names``.
        DataError: The file is missing or a line is malformed.
    """
    check_labels(positive_labels, label_names, "FIGNEWS positive labels")
    examples = []
    for _, record in read_jsonl(Path(path), ("text",), ("id",)):
        labels: dict[str, LabelValue] = dict.fromkeys(label_names)
        for name in positive_labels:
            labels[name] = 1.0
        examples.append(
            TopicExample(
                id=str(record["id"]), text=str(record["text"]).strip(), source=source, labels=labels
            )
        )
    logger.info("read %d FIGNEWS posts from %s", len(examples), path)
    return examples


# --------------------------------------------------------------------------- dedupe, split


def deduplicate(examples: Iterable[TopicExample]) -> list[TopicExample]:
    """Drop every example whose key text was seen before; keep the first copy.

    Copies would otherwise weigh twice in training and, worse, one copy could be
    tested on after the other was trained on. Which copy survives matters when copies
    disagree on labels (the same wire story filed under two sections), so the rule is
    simply "first in reading order".
    """
    seen: set[str] = set()
    kept: list[TopicExample] = []
    dropped = 0
    for example in examples:
        key = example.key_text
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(example)
    logger.info("de-duplication kept %d examples and dropped %d copies", len(kept), dropped)
    return kept


def _check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions:
        raise ConfigError("split fractions: at least one split is needed")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"split fractions: {name} = {value} is outside [0, 1]")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {total:g}")


def split_bucket(text: str) -> float:
    """Map a text to a stable number in ``[0, 1)`` from the SHA-1 of its key form.

    A hash rather than a seeded shuffle: the split of a text never depends on which
    other texts are in the corpus, on file order or on the Python version.
    """
    digest = hashlib.sha1(normalise_for_key(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(text: str, fractions: Mapping[str, float]) -> str:
    """Return the split a text belongs to.

    Args:
        text: The text; whitespace differences do not change its split.
        fractions: Split name -> fraction, in bucket order; must sum to 1.

    Raises:
        ConfigError: The fractions are negative, above 1 or do not sum to 1.
    """
    _check_fractions(fractions)
    bucket = split_bucket(text)
    cumulative = 0.0
    names = list(fractions)
    for name in names:
        cumulative += fractions[name]
        if bucket < cumulative:
            return name
    return next(name for name in reversed(names) if fractions[name] > 0)


def split_examples(
    examples: Iterable[TopicExample], fractions: Mapping[str, float]
) -> dict[str, list[TopicExample]]:
    """Partition examples by ``split_of`` their key text, keeping their order.

    Copies share a key text and so a split, which keeps the splits disjoint even if
    ``deduplicate`` was not run first.

    Returns:
        Every split name of ``fractions`` -> its examples (possibly empty).
    """
    _check_fractions(fractions)
    splits: dict[str, list[TopicExample]] = {name: [] for name in fractions}
    for example in examples:
        splits[split_of(example.key_text, fractions)].append(example)
    logger.info(
        "split sizes: %s", ", ".join(f"{name}={len(items)}" for name, items in splits.items())
    )
    return splits

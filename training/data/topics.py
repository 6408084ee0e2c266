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
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

TOPIC_LABELS: tuple[str, ...] = (
    "politics",
    "economy",
    "sport",
    "technology",
    "culture",
    "middle_east",
    "middle_east_conflict",
    "russia_ukraine",
)
"""The topic label set, in the order the model's output units use."""

SECTION_LABELS: tuple[str, ...] = TOPIC_LABELS[:5]
"""The labels of which every article has exactly one (its primary section)."""

ANT_SECTION_MAP: Mapping[str, str] = MappingProxyType(
    {
        "internationalNews": "politics",
        "middleEast": "politics",
        "economy": "economy",
        "sport": "sport",
        "technology": "technology",
        "culture": "culture",
    }
)
"""ANT section name -> section label. Both news sections are politics for the model."""

ANT_MIDDLE_EAST_SOURCES: tuple[str, ...] = ("skynews", "bbc", "cnn")
"""ANT sources whose menus separate Middle East news from the rest of the world news."""

ANT_REGION_SECTIONS: Mapping[str, float] = MappingProxyType(
    {"middleEast": 1.0, "internationalNews": 0.0}
)
"""For a source in ``ANT_MIDDLE_EAST_SOURCES``: ANT section -> ``middle_east`` value."""

DEFAULT_SPLIT: Mapping[str, float] = MappingProxyType({"train": 0.8, "dev": 0.1, "test": 0.1})
"""Default split fractions, in bucket order."""

FIGNEWS_POSITIVE_LABELS: tuple[str, ...] = ("middle_east_conflict", "middle_east")
"""Labels that every FIGNEWS post has; the rest of its labels are unknown."""

LabelValue = float | None


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


def _check_labels(names: Iterable[str], label_names: Sequence[str], what: str) -> None:
    known = set(label_names)
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{what}: unknown label {name!r}; the label set is {', '.join(label_names)}"
            )


# --------------------------------------------------------------------------- story rules

# Hamza-carrying alefs fold to a bare alef and diacritics, tatweel and bidi or zero-width
# marks go, because news sites spell the same name with and without them. Alef maqsura
# and teh marbuta stay: folding them merges words such as "اليمنى" (right) and "اليمني"
# (Yemeni). Hashtag marks and underscores become spaces so that "#ميليشيات_الحوثي" reads
# as the words it is made of.
_FOLD_TABLE = str.maketrans(
    {
        "\u0622": "\u0627",
        "\u0623": "\u0627",
        "\u0625": "\u0627",
        "\u0671": "\u0627",
        "#": " ",
        "_": " ",
        "\u0640": None,
        **{chr(c): None for c in range(0x064B, 0x0660)},
        "\u0670": None,
        **{c: None for c in "\u200b\u200c\u200d\u200e\u200f\u061c\ufeff"},
    }
)


def fold_for_rules(text: str) -> str:
    """Fold spelling variants that keyword rules should not have to list one by one."""
    return text.translate(_FOLD_TABLE)


class _RuleSpec(BaseModel):
    """The YAML shape of one story rule (see ``configs/stories.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    groups: dict[str, list[str]] = Field(min_length=1)
    positive_if: list[dict[str, int]] = Field(min_length=1)
    negative_if_no_match_in: list[str] = Field(min_length=1)
    negative_sections: list[str] | None = None
    positive_sections: list[str] | None = None
    lead_groups: list[str] = Field(default_factory=list)
    lead_chars: int = Field(default=300, gt=0)
    veto: list[str] = Field(default_factory=list)


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    stories: dict[str, _RuleSpec] = Field(min_length=1)


@dataclass(frozen=True)
class StoryRule:
    """Keyword evidence for one story label and how it turns into 1, 0 or unknown.

    Attributes:
        label: The story label this rule sets.
        groups: Group name -> compiled patterns. Evidence is counted per group as the
            number of *distinct* patterns that match, so one word repeated ten times is
            still one piece of evidence.
        positive_if: Alternatives; the text is positive if, for any one of them, every
            group reaches its minimum count.
        negative_if_no_match_in: Groups that must all be silent for a negative.
        negative_sections: Section labels in which silence means negative; ``None``
            means every section. Elsewhere a silent text stays unknown.
        positive_sections: Section labels in which strong evidence means positive;
            ``None`` means every section. Elsewhere it only makes the text unknown,
            for sections whose vocabulary mimics the story's (a final in Kyiv).
        lead_groups: Groups of which at least one must match within the first
            ``lead_chars`` characters (title and lead) for a positive. News states its
            subject up front; a conflict named only in passing deep in a profile or a
            diplomatic story makes the text unknown rather than positive.
        lead_chars: Length of the lead, in characters of the folded text.
        veto: Patterns that make any would-be positive unknown instead (known traps).
    """

    label: str
    groups: dict[str, tuple[re.Pattern[str], ...]]
    positive_if: tuple[dict[str, int], ...]
    negative_if_no_match_in: tuple[str, ...]
    negative_sections: frozenset[str] | None = None
    positive_sections: frozenset[str] | None = None
    lead_groups: tuple[str, ...] = ()
    lead_chars: int = 300
    veto: tuple[re.Pattern[str], ...] = ()

    def evidence(self, text: str) -> dict[str, list[str]]:
        """Return, per group, the patterns that match the (folded) text.

        Kept public so that rule checks can show *why* a text was labelled.
        """
        folded = fold_for_rules(text)
        return {
            name: [p.pattern for p in patterns if p.search(folded)]
            for name, patterns in self.groups.items()
        }

    def apply(self, text: str, section: str | None) -> LabelValue:
        """Label one text: ``1.0`` strong evidence, ``0.0`` silence, else ``None``."""
        return self.apply_folded(fold_for_rules(text), section)

    def apply_folded(self, folded: str, section: str | None) -> LabelValue:
        """Like ``apply`` for a text already passed through ``fold_for_rules``.

        Several rules read the same text; folding it once saves a pass per rule.
        """
        hits = {
            name: sum(1 for p in patterns if p.search(folded))
            for name, patterns in self.groups.items()
        }
        if any(all(hits[g] >= n for g, n in cond.items()) for cond in self.positive_if):
            if self.positive_sections is not None and section not in self.positive_sections:
                return None
            if self.lead_groups and not self._lead_hit(folded):
                return None
            return None if any(p.search(folded) for p in self.veto) else 1.0
        silent = all(hits[g] == 0 for g in self.negative_if_no_match_in)
        in_scope = self.negative_sections is None or section in self.negative_sections
        return 0.0 if silent and in_scope else None

    def _lead_hit(self, folded: str) -> bool:
        lead = folded[: self.lead_chars]
        return any(p.search(lead) for g in self.lead_groups for p in self.groups[g])


@dataclass(frozen=True)
class StoryRules:
    """All story rules of a config file, applied together."""

    rules: tuple[StoryRule, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels these rules set, in file order."""
        return tuple(rule.label for rule in self.rules)

    def apply(self, text: str, section: str | None) -> dict[str, LabelValue]:
        """Label ``text`` for every story.

        Args:
            text: The text the model will read (title and body for ANT).
            section: The article's section *label* (``politics``, ``sport``, ...), or
                ``None`` when unknown; it decides whether silence counts as negative.

        Returns:
            Story label -> ``1.0``, ``0.0`` or ``None``.
        """
        folded = fold_for_rules(text)
        return {rule.label: rule.apply_folded(folded, section) for rule in self.rules}


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(fold_for_rules(pattern))
    except re.error as error:
        raise ConfigError(f"{where}: invalid regular expression {pattern!r} ({error})") from None


def _frozen(items: list[str] | None) -> frozenset[str] | None:
    return None if items is None else frozenset(items)


def load_story_rules(path: Path, label_names: Sequence[str] | None = None) -> StoryRules:
    """Read and compile the story rules YAML.

    Patterns are folded like the texts they are matched against, so a rule can be
    written with or without hamza on its alefs.

    Args:
        path: The rules file, e.g. ``configs/stories.yaml``.
        label_names: When given, every story label must be one of them.

    Raises:
        ConfigError: The file is missing or malformed, a pattern does not compile, a
            condition names an unknown group, or a story label is unknown.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: story rules file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read story rules ({error})") from None
    try:
        spec = _RulesFile.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: {location}: {first['msg']}") from None
    if label_names is not None:
        _check_labels(spec.stories, label_names, f"{path}: stories")
    rules = []
    for label, rule in spec.stories.items():
        where = f"{path}: stories.{label}"
        groups = {
            name: tuple(_compile(p, f"{where}.groups.{name}") for p in patterns)
            for name, patterns in rule.groups.items()
        }
        named = [g for cond in rule.positive_if for g in cond]
        named += rule.negative_if_no_match_in + rule.lead_groups
        for group in named:
            if group not in groups:
                raise ConfigError(f"{where}: condition names unknown group {group!r}")
        if label_names is not None:
            for key in ("negative_sections", "positive_sections"):
                sections = getattr(rule, key)
                if sections is not None:
                    _check_labels(sections, label_names, f"{where}.{key}")
        rules.append(
            StoryRule(
                label=label,
                groups=groups,
                positive_if=tuple(dict(cond) for cond in rule.positive_if),
                negative_if_no_match_in=tuple(rule.negative_if_no_match_in),
                negative_sections=_frozen(rule.negative_sections),
                positive_sections=_frozen(rule.positive_sections),
                lead_groups=tuple(rule.lead_groups),
                lead_chars=rule.lead_chars,
                veto=tuple(_compile(p, f"{where}.veto") for p in rule.veto),
            )
        )
    return StoryRules(rules=tuple(rules))


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
    _check_labels(section_map.values(), label_names, "ANT section map")
    _check_labels([region_label], label_names, "ANT region label")
    if story_rules is not None:
        _check_labels(story_rules.labels, label_names, "story rules")
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
    _check_labels(positive_labels, label_names, "FIGNEWS positive labels")
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


def split_of(text: str, fractions: Mapping[str, float] = DEFAULT_SPLIT) -> str:
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
    examples: Iterable[TopicExample], fractions: Mapping[str, float] = DEFAULT_SPLIT
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


def label_counts(examples: Iterable[TopicExample], label_names: Sequence[str]) -> dict:
    """Count positives, negatives and unknowns per label, for reports and sanity checks."""
    counts = {name: {"pos": 0, "neg": 0, "masked": 0} for name in label_names}
    for example in examples:
        for name in label_names:
            value = example.labels.get(name)
            key = "masked" if value is None else ("pos" if value >= 0.5 else "neg")
            counts[name][key] += 1
    return counts

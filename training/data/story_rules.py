"""Story rules: keyword rules over folded text that label ANT articles with stories.

ANT annotates no story. ``configs/stories.yaml`` holds, per story, groups of patterns that
must all match (over text folded by :func:`fold_for_rules`), and the rules answer ``None``
whenever the evidence is only partial, so that the loss masks such a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import ConfigError

LabelValue = float | None
"""A label's value: ``1.0``, ``0.0``, or ``None`` for unknown (masked by the loss)."""


def check_labels(names: Iterable[str], label_names: Sequence[str], what: str) -> None:
    """Raise a ``ConfigError`` naming the first of ``names`` not in ``label_names``."""
    known = set(label_names)
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{what}: unknown label {name!r}; the label set is {', '.join(label_names)}"
            )


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
        check_labels(spec.stories, label_names, f"{path}: stories")
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
                    check_labels(sections, label_names, f"{where}.{key}")
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

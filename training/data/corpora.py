"""All corpora of a recipe, loaded and split once: entity train/dev/test, topic train/dev/test."""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from training.config import KhabarConfig
from training.data.conll import Sentence, read_conll, split_dev
from training.data.topics import (
    TopicExample,
    deduplicate,
    load_ant,
    load_fignews,
    load_story_rules,
    split_examples,
)

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


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, recorded so a model names the exact data it saw."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    entities = config.entities
    if entities is not None:
        sentences = read_conll(entities.train, entities.types, entities.tag_map)
        corpora.entity_train, corpora.entity_dev = split_dev(sentences, entities.dev_fraction)
        if entities.max_train_sentences:
            corpora.entity_train = corpora.entity_train[: entities.max_train_sentences]
        corpora.files[str(entities.train)] = sha256_of(entities.train)
        if with_test and entities.test is not None:
            corpora.entity_test = read_conll(entities.test, entities.types, entities.tag_map)
            corpora.files[str(entities.test)] = sha256_of(entities.test)
    topics = config.topics
    if topics is not None:
        rules = load_story_rules(topics.story_rules) if topics.story_rules else None
        examples: list[TopicExample] = []
        if topics.ant_paths:
            examples += load_ant(
                topics.ant_paths,
                topics.labels,
                topics.section_map,
                topics.middle_east_sources,
                rules,
                text_fields=topics.text_fields,
            )
            for path in topics.ant_paths:
                corpora.files[str(path)] = sha256_of(path)
        if topics.fignews is not None:
            examples += load_fignews(topics.fignews, topics.labels)
            corpora.files[str(topics.fignews)] = sha256_of(topics.fignews)
        if topics.story_rules is not None:
            corpora.files[str(topics.story_rules)] = sha256_of(topics.story_rules)
        splits = split_examples(deduplicate(examples), topics.split.model_dump())
        stories = [label for label in topics.labels if topics.kinds.get(label) == "story"]
        seed = config.training.seed
        corpora.topic_train = _cap(splits["train"], topics.max_train_examples, seed, stories)
        corpora.topic_dev = _cap(splits["dev"], topics.max_dev_examples, seed, stories)
        if with_test:
            corpora.topic_test = _cap(splits["test"], topics.max_test_examples, seed, stories)
    logger.info("corpora: %s", corpora.counts())
    return corpora

"""StoryScorer: how strongly an article belongs to each defined story, without retraining.

Evidence per story (``FEATURES`` in ``schema.py``, in this order):

* ``sim_positive``: cosine between the article's title and lead (base e5, ``query: ``)
  and its closest positive example;
* ``sim_margin``: that similarity minus the closest near miss's (0 without near misses),
  so "Russia–NATO exercise" reads closer to its near miss than to the war;
* ``sim_description``: cosine to the Arabic (and English) description;
* ``anchors_lead`` / ``anchors_body``: distinct anchor terms (key entities: Ukraine,
  Crimea, Zelensky) named in the title and lead / anywhere, as ``log1p`` of the count;
* ``context_terms``: distinct context terms (ceasefire, talks, prisoners), ``log1p``;
* ``anchor_entities``: distinct anchors among the predictor's own entity mentions
  (a ``LOC`` "كييف" counts, a "كييف" inside a club name tagged ``ORG`` counts too);
* ``model_head``: the model's own trained head of the same name, when it has one (the
  shipped model has ``middle_east_conflict`` and ``russia_ukraine``), else 0. The head
  stays beside its definition only through this weight, fitted on dev: after a model is
  replaced, refit with ``python -m training.story_calibration``.

A text that names none of a story's anchors is not in it: its evidence stays 0 and its
probability is 0 (the anchor gate); so is a text whose primary section (the model's
best-scoring section) is one the definition excludes (``exclude_sections``); and a
text naming no anchor of any loaded story skips the story encoder. Otherwise a
logistic combiner turns the evidence into a probability. Its weights come from the
definition's ``combiner`` block (the shipped stories are fitted on the project's dev
set by ``python -m training.story_calibration``) or, for a story without labelled data,
from :data:`DEFAULT_COMBINER`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.stories.encoder import (
    DEFAULT_STORY_ENCODER_DIR,
    ENCODER_INFO,
    STORY_ENCODER_ENV,
    StoryEncoder,
)
from serving.stories.schema import (
    DEFAULT_STORIES_DIR,
    FEATURES,
    Combiner,
    StoryDefinition,
    load_definitions,
)
from serving.stories.terms import TermMatcher, fold

DEFAULT_COMBINER = Combiner(
    bias=-20.3721,
    weights={
        "sim_positive": 12.4849,
        "sim_margin": 31.2904,
        "sim_description": 8.8775,
        "anchors_lead": 2.7661,
        "anchors_body": 0.0464,
        "context_terms": 0.1049,
        "anchor_entities": 0.7805,
        "model_head": 0.0,
    },
    threshold=0.5,
    calibrated_on=None,
)
"""Weights for a definition that brings none: one logistic fitted on the dev evidence of
both shipped stories pooled, without the trained-head feature (``fit_default_combiner``
in ``training/story_eval.py``; ``python -m training.story_calibration`` prints it).

What it says: a text is in a story when its title and lead read like the positive
examples more than like the near misses (``sim_margin`` dominates), the description
agrees, and an anchor is named in the lead (a text naming none of the story's anchors
never gets this far: the anchor gate in :meth:`StoryScorer.probabilities`)."""

logger = logging.getLogger(__name__)

ANCHORS_BODY = FEATURES.index("anchors_body")


def passes_gate(evidence: np.ndarray) -> np.ndarray:
    """Which rows of evidence (``[..., len(FEATURES)]``) name one of their story's anchors.

    The one statement of the anchor gate, read by :meth:`StoryScorer.probabilities` and
    by calibration (which fits only the rows that pass).
    """
    return evidence[..., ANCHORS_BODY] > 0


ENTITY_TYPES_FOR_ANCHORS = frozenset({"PER", "LOC", "ORG", "MISC"})


@dataclass(frozen=True)
class CompiledStory:
    """A definition with its matchers, example embeddings and combiner, ready to score."""

    definition: StoryDefinition
    anchors: TermMatcher
    context: TermMatcher
    positives: np.ndarray
    near_misses: np.ndarray
    description: np.ndarray
    combiner: Combiner

    @property
    def name(self) -> str:
        """The story's label."""
        return self.definition.name

    @property
    def weights(self) -> np.ndarray:
        """Combiner weights in ``FEATURES`` order (missing ones are 0)."""
        return np.array([self.combiner.weights.get(f, 0.0) for f in FEATURES], dtype=np.float64)


class StoryScorer:
    """Scores loaded definitions on documents; shared by the CLI, the API and evaluation."""

    def __init__(self, encoder: StoryEncoder, definitions: Sequence[StoryDefinition]) -> None:
        """Compile every definition (embeds its examples and description once, at load)."""
        self.encoder = encoder
        self.stories = [self._compile(d) for d in definitions]

    @property
    def labels(self) -> list[str]:
        """Story labels in scoring order."""
        return [story.name for story in self.stories]

    def _compile(self, definition: StoryDefinition) -> CompiledStory:
        descriptions = [definition.description.ar]
        if definition.description.en:
            descriptions.append(definition.description.en)
        texts = [*definition.examples.positive, *definition.examples.near_miss, *descriptions]
        vectors = self.encoder.embed(texts)
        n_pos = len(definition.examples.positive)
        n_neg = len(definition.examples.near_miss)
        return CompiledStory(
            definition=definition,
            anchors=TermMatcher(definition.terms.anchors),
            context=TermMatcher(definition.terms.context),
            positives=vectors[:n_pos],
            near_misses=vectors[n_pos : n_pos + n_neg],
            description=vectors[n_pos + n_neg :],
            combiner=definition.combiner or DEFAULT_COMBINER,
        )

    def evidence(
        self,
        texts: Sequence[str],
        entities: Sequence[Sequence[tuple[str, str]]] | None = None,
        embeddings: np.ndarray | None = None,
        heads: Sequence[Mapping[str, float]] | None = None,
        sections: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Evidence of every story on every text: ``[n_texts, n_stories, len(FEATURES)]``.

        Args:
            texts: Documents as sent (title and lead first, as news is written).
            entities: Per document, ``(text, label)`` of the predictor's entity mentions.
            embeddings: Precomputed title-and-lead embeddings (else computed here).
            heads: Per document, the model's topic scores (its trained story heads).
            sections: Per document, the model's primary section (for ``exclude_sections``).
        """
        folded = [fold(text) for text in texts]
        anchors = self.anchor_counts(folded)
        if sections is not None:
            for s, story in enumerate(self.stories):
                excluded = set(story.definition.exclude_sections)
                anchors[[section in excluded for section in sections], s] = 0
        if embeddings is None:
            embeddings = self._embed_gated(texts, anchors.any(axis=1))
        out = np.zeros((len(texts), len(self.stories), len(FEATURES)), dtype=np.float64)
        for s, story in enumerate(self.stories):
            sim_pos = (embeddings @ story.positives.T).max(axis=1)
            sim_neg = (
                (embeddings @ story.near_misses.T).max(axis=1)
                if story.near_misses.shape[0]
                else sim_pos
            )
            sim_desc = (embeddings @ story.description.T).max(axis=1)
            lead_chars = story.definition.lead_chars
            for d, text in enumerate(folded):
                if not anchors[d, s]:
                    continue  # gated: no anchor, no evidence (see ``probabilities``)
                mentions = [
                    fold(mention)
                    for mention, label in (entities[d] if entities is not None else ())
                    if label in ENTITY_TYPES_FOR_ANCHORS
                ]
                out[d, s] = (
                    sim_pos[d],
                    sim_pos[d] - sim_neg[d],
                    sim_desc[d],
                    np.log1p(story.anchors.count(text[:lead_chars])),
                    np.log1p(anchors[d, s]),
                    np.log1p(story.context.count(text)),
                    np.log1p(story.anchors.count_in(mentions)),
                    heads[d].get(story.name, 0.0) if heads is not None else 0.0,
                )
        return out

    def anchor_counts(self, folded: Sequence[str]) -> np.ndarray:
        """Distinct anchors of each story named in each folded text: ``[n_texts, n_stories]``."""
        return np.array(
            [[story.anchors.count(text) for story in self.stories] for text in folded],
            dtype=np.float64,
        ).reshape(len(folded), len(self.stories))

    def _embed_gated(self, texts: Sequence[str], needed: np.ndarray) -> np.ndarray:
        """Title-and-lead embeddings of the texts that name an anchor; zeros for the rest.

        Most news names no anchor of any loaded story (two thirds of ANT's articles for
        the shipped two), so the story encoder's pass is skipped for them.
        """
        rows = [i for i, need in enumerate(needed) if need]
        if not rows:
            width = self.stories[0].positives.shape[1] if self.stories else 1
            return np.zeros((len(texts), width), dtype=np.float32)
        # One text per encoder call: the int8 encoder scales its activations over the whole
        # batch, so batch-mates would move a text's evidence (and its scores).
        vectors = self.encoder.embed([texts[i] for i in rows], batch_size=1)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=vectors.dtype)
        out[rows] = vectors
        return out

    def probabilities(self, evidence: np.ndarray) -> np.ndarray:
        """Combiner output for evidence from :meth:`evidence`: ``[n_texts, n_stories]``.

        The anchor gate: a text that names none of a story's anchors is not in that story
        (probability 0), whatever its other evidence; anchors are what place a text in a
        story (``Terms``). On the project's story set no dev positive lacks an anchor.
        """
        logits = np.stack(
            [
                evidence[:, s, :] @ story.weights + story.combiner.bias
                for s, story in enumerate(self.stories)
            ],
            axis=1,
        )
        return np.where(passes_gate(evidence), 1.0 / (1.0 + np.exp(-logits)), 0.0)

    def score(
        self,
        texts: Sequence[str],
        entities: Sequence[Sequence[tuple[str, str]]] | None = None,
        heads: Sequence[Mapping[str, float]] | None = None,
        sections: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Probability of every story on every text: ``[n_texts, n_stories]``."""
        if not texts or not self.stories:
            return np.zeros((len(texts), len(self.stories)))
        return self.probabilities(self.evidence(texts, entities, heads=heads, sections=sections))

    def thresholds(self) -> dict[str, float]:
        """Decision threshold of each story."""
        return {story.name: story.combiner.threshold for story in self.stories}


def load_story_scorer(
    extra: Sequence[Path] = (),
    encoder_dir: Path | None = None,
    threads: int | None = None,
    shipped: Path | None = DEFAULT_STORIES_DIR,
) -> StoryScorer | None:
    """The shipped definitions plus the user's (``--stories DIR``), ready to score.

    Every file is validated before anything else loads, so a bad definition fails here
    with one line naming the file and the field. Without user definitions, a missing
    story encoder only switches definition scoring off (with a warning); with them, it
    is an error.

    Raises:
        ConfigError: A definition file is invalid.
        ModelLoadError: The story encoder is missing or broken and definitions were asked for.
    """
    sources = [shipped] if shipped is not None and shipped.is_dir() else []
    sources += list(extra)
    if not sources:
        return None
    definitions = load_definitions(*sources)
    encoder_dir = encoder_dir or Path(os.environ.get(STORY_ENCODER_ENV, DEFAULT_STORY_ENCODER_DIR))
    if not extra and not (encoder_dir / ENCODER_INFO).is_file():
        logger.warning("no story encoder at %s: story definitions are not scored", encoder_dir)
        return None
    return StoryScorer(StoryEncoder.load(encoder_dir, threads=threads), definitions)

"""Predictor: loads a model directory once and analyses documents.

``analyze`` composes the steps of the data path (normalise -> split words ->
tokenise -> window -> batch -> encode -> merge -> decode -> map spans) and does
nothing else; each step is a public method so that evaluation and the HTTP
server can reuse or replace it.

A document's answer depends on that document alone. The int8 encoder quantises
its activations with one scale per tensor, computed over the whole batch, so a
batch that mixed documents would let one document's text change another's scores
(by up to 0.06 in a topic score, and an entity gained or lost). Every encoder
batch therefore holds windows of one document only (:meth:`Predictor.batches`);
what that costs in throughput is measured by ``python -m benchmarks.run --load``.
By default a batch is one window, so that a sentence's tags depend on its own
window's text and not on the other windows of its article (a larger
``batch_size`` reads a long article about 5% faster, at that cost).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.decode import decode_tags, log_softmax, sigmoid, tags_to_spans, topics_over_threshold
from serving.errors import ConfigError, ModelLoadError
from serving.groups import EntityGroup, name_and_group
from serving.language import too_little_arabic
from serving.lexical import LexicalHead
from serving.metadata import MODEL_ENV, TOKENIZER_NAME, ModelMetadata
from serving.names import join_known_names, split_known_pairs
from serving.normalise import Normalised, normalise
from serving.sentences import sentence_start_tokens
from serving.session import ENTITY_OUTPUT, TOPIC_OUTPUT, OnnxSession
from serving.spans import Entity, to_entities
from serving.stories.schema import load_definitions
from serving.stories.scorer import load_story_scorer
from serving.tokenise import Encoded, Word, load_tokenizer, split_words, tokenise_words
from serving.windows import (
    Window,
    merge_document_scores,
    merge_token_scores,
    plan_sentence_windows,
    plan_windows,
)

if TYPE_CHECKING:
    from serving.stories.scorer import StoryScorer

logger = logging.getLogger(__name__)

# One window per encoder call: a window's answer depends on that window alone.
DEFAULT_BATCH_SIZE = 1


@dataclass(frozen=True)
class Prepared:
    """A document made ready for the encoder."""

    normalised: Normalised
    words: list[Word]
    encoded: Encoded
    windows: list[Window]

    @property
    def n_tokens(self) -> int:
        """Sub-word tokens of the document (what the token limits count)."""
        return self.encoded.n_tokens


@dataclass(frozen=True)
class WindowScores:
    """Raw outputs of one window: token logits ``[length, tags]`` and topic logits."""

    token_logits: np.ndarray | None
    topic_logits: np.ndarray | None


@dataclass(frozen=True)
class Scores:
    """Merged raw outputs for one document: word logits and topic logits."""

    word_logits: np.ndarray | None
    topic_logits: np.ndarray | None


@dataclass(frozen=True)
class DocumentResult:
    """What khabar says about one document."""

    id: str | None
    entities: list[Entity]
    topics: list[tuple[str, float]]
    topic_scores: dict[str, float]
    n_tokens: int = field(default=0, compare=False)
    entity_groups: list[EntityGroup] = field(default_factory=list)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the CLI and the API."""
        return {
            "id": self.id,
            "entities": [entity.to_dict() for entity in self.entities],
            "entity_groups": [group.to_dict() for group in self.entity_groups],
            "topics": [{"label": label, "score": round(score, 4)} for label, score in self.topics],
            "topic_scores": {label: round(score, 4) for label, score in self.topic_scores.items()},
            "warnings": list(self.warnings),
        }


def load_lexical_head(model_dir: Path, metadata: ModelMetadata) -> LexicalHead | None:
    """The model's lexical topic head, if its metadata names one.

    Raises:
        ModelLoadError: The file is missing or does not fit the model's topic labels.
    """
    if metadata.lexical_head is None:
        return None
    head = LexicalHead.load(metadata.verified_file(model_dir, metadata.lexical_head))
    if head.bias.shape[0] != len(metadata.topic_labels):
        raise ModelLoadError(
            f"lexical topic head {metadata.lexical_head} has {head.bias.shape[0]} labels; "
            f"the model has {len(metadata.topic_labels)}"
        )
    return head


class Predictor:
    """An exported khabar model, ready to analyse text.

    >>> predictor = Predictor.load(Path("models/default"))  # doctest: +SKIP
    >>> predictor.analyze(["زار الرئيس ماكرون بيروت"])[0].entities  # doctest: +SKIP
    """

    def __init__(
        self,
        metadata: ModelMetadata,
        tokenizer: Any,
        session: OnnxSession,
        model_dir: Path | None = None,
        lexical: LexicalHead | None = None,
        stories: StoryScorer | None = None,
    ) -> None:
        """Assemble a predictor from loaded parts (see :meth:`load`)."""
        self.metadata = metadata
        self.tokenizer = tokenizer
        self.session = session
        self.model_dir = model_dir
        self.lexical = lexical
        self.stories = stories
        self.entity_tags = metadata.entity_tags

    @classmethod
    def load(
        cls, model_dir: Path, threads: int | None = None, variant: str | None = None
    ) -> Predictor:
        """Load a model directory.

        Args:
            model_dir: Directory with ``khabar.json``, ``tokenizer.json`` and the ONNX file(s).
            threads: onnxruntime intra-op threads (default: the CPUs available, up to 8).
            variant: Which ONNX file to use (``int8``, ``fp32``); default from the metadata.

        Raises:
            ModelLoadError: Anything is missing or corrupt.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelLoadError(f"model directory not found: {model_dir}")
        metadata = ModelMetadata.load(model_dir)
        variant = variant or metadata.default_variant
        if variant not in metadata.onnx_files:
            raise ModelLoadError(
                f"model {model_dir} has no {variant!r} variant; "
                f"it has {sorted(metadata.onnx_files)}"
            )
        if not metadata.file_sha256:
            logger.warning("%s records no file sha256: its files are loaded unchecked", model_dir)
        tokenizer = load_tokenizer(metadata.verified_file(model_dir, TOKENIZER_NAME))
        onnx_path = metadata.verified_file(model_dir, metadata.onnx_files[variant])
        session = OnnxSession(onnx_path, threads=threads)
        return cls(metadata, tokenizer, session, model_dir, load_lexical_head(model_dir, metadata))

    def with_metadata(self, metadata: ModelMetadata | None = None, **updates: Any) -> Predictor:
        """The same loaded model with other metadata, or some fields changed (decoder, ...)."""
        return Predictor(
            (metadata or self.metadata).model_copy(update=updates),
            self.tokenizer,
            self.session,
            self.model_dir,
            self.lexical,
            self.stories,
        )

    def with_lexical(self, lexical: LexicalHead | None) -> Predictor:
        """The same loaded model with another lexical topic head (or none)."""
        return Predictor(
            self.metadata, self.tokenizer, self.session, self.model_dir, lexical, self.stories
        )

    def with_stories(self, stories: StoryScorer | None) -> Predictor:
        """The same loaded model scoring these story definitions (or none) beside its heads.

        Raises:
            ConfigError: A definition excludes a section this model does not have.
        """
        sections = self.metadata.sections
        for story in stories.stories if stories is not None else ():
            unknown = sorted(set(story.definition.exclude_sections) - set(sections))
            if unknown:
                raise ConfigError(
                    f"story {story.name}: field exclude_sections: {', '.join(unknown)} "
                    f"is not a section of model {self.metadata.name} ({', '.join(sections)})"
                )
        return Predictor(
            self.metadata, self.tokenizer, self.session, self.model_dir, self.lexical, stories
        )

    def topic_display_name(self, label: str) -> str:
        """A label's Arabic display name (a story definition's own, else the model's)."""
        if self.stories is not None:
            for story in self.stories.stories:
                if story.name == label:
                    return story.definition.display_names.ar
        return self.metadata.topic_display_names.get(label, label)

    def topic_kind(self, label: str) -> str | None:
        """A label's kind; a label scored by a story definition is a story."""
        if self.stories is not None and label in self.stories.labels:
            return "story"
        return self.metadata.topic_kinds.get(label)

    # -- steps -----------------------------------------------------------------

    def prepare(self, texts: Sequence[str]) -> list[Prepared]:
        """Normalise, split into words, tokenise and plan windows for each text."""
        normalised = [normalise(text, self.metadata.normaliser) for text in texts]
        words = [split_words(n.text) for n in normalised]
        encoded = tokenise_words(self.tokenizer, [[w.text for w in ws] for ws in words])
        return [
            Prepared(normalised=n, words=ws, encoded=e, windows=self.plan(doc, n.text, ws, e))
            for doc, (n, ws, e) in enumerate(zip(normalised, words, encoded, strict=True))
        ]

    def plan(self, doc: int, text: str, words: Sequence[Word], encoded: Encoded) -> list[Window]:
        """The windows of one document, by the model's ``window_plan``."""
        size, stride = self.metadata.max_content, self.metadata.stride
        if self.metadata.window_plan == "tokens":
            return plan_windows(doc, encoded.n_tokens, size, stride)
        starts = sentence_start_tokens(words, text, encoded.word_first_token)
        return plan_sentence_windows(doc, encoded.n_tokens, size, stride, starts)

    def batches(self, prepared: Sequence[Prepared], batch_size: int) -> list[list[Window]]:
        """Encoder batches of at most ``batch_size`` windows, each of one document only.

        Batches never mix documents, so no document's scores depend on another's text
        (see the module docstring); a document's windows are all of one length, so its
        batches pad nothing. A document longer than ``batch_size`` windows is read in
        consecutive batches of ``batch_size``.
        """
        return [
            item.windows[i : i + batch_size]
            for item in prepared
            for i in range(0, len(item.windows), batch_size)
        ]

    def collate(
        self, prepared: Sequence[Prepared], batch: Sequence[Window]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Build padded ``input_ids`` and ``attention_mask`` with CLS/SEP around each window."""
        special = self.metadata.special_tokens
        width = max(w.length for w in batch) + 2
        input_ids = np.full((len(batch), width), special.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, window in enumerate(batch):
            content = prepared[window.doc].encoded.ids[window.start : window.end]
            input_ids[row, 0] = special.cls_id
            input_ids[row, 1 : 1 + window.length] = content
            input_ids[row, 1 + window.length] = special.sep_id
            attention_mask[row, : window.length + 2] = 1
        return input_ids, attention_mask

    def encode_batch(
        self, prepared: Sequence[Prepared], batch: Sequence[Window], run_options: Any = None
    ) -> list[WindowScores]:
        """Run the encoder on one batch; per window, its token and topic logits.

        Args:
            prepared: The documents the windows' ``doc`` indices point into.
            batch: Windows to encode together (see :meth:`batches`).
            run_options: An ``onnxruntime.RunOptions`` through which another thread can
                stop the call (the HTTP server's shutdown), or ``None``; passed on only to
                sessions that say they take it (``stoppable``).
        """
        input_ids, attention_mask = self.collate(prepared, batch)
        if run_options is not None and getattr(self.session, "stoppable", False):
            outputs = self.session.run(input_ids, attention_mask, run_options=run_options)
        else:
            outputs = self.session.run(input_ids, attention_mask)
        entity_logits = outputs.get(ENTITY_OUTPUT)
        topic_logits = outputs.get(TOPIC_OUTPUT)
        scores = []
        for row, window in enumerate(batch):
            tokens = None
            if entity_logits is not None:
                tokens = entity_logits[row, 1 : 1 + window.length]
            topics = None
            if topic_logits is not None:
                topics = topic_logits[row]
                if self.lexical is not None:
                    ids = prepared[window.doc].encoded.ids[window.start : window.end]
                    topics = topics + self.lexical.logits(ids)
            scores.append(WindowScores(token_logits=tokens, topic_logits=topics))
        return scores

    def merge(self, item: Prepared, window_scores: Mapping[int, WindowScores]) -> Scores:
        """Merge one document's window outputs (keyed by window start) into its scores."""
        outputs = [window_scores[w.start] for w in item.windows]
        word_logits = None
        if outputs and outputs[0].token_logits is not None:
            merged = merge_token_scores(
                item.encoded.n_tokens,
                item.windows,
                [o.token_logits for o in outputs],  # type: ignore[misc]
            )
            word_logits = self._word_logits(merged, item.encoded)
        doc_topics = None
        if outputs and outputs[0].topic_logits is not None:
            # "first": the title and lead decide (how the topic head was trained);
            # "mean": every window votes by its length.
            count = 1 if self.metadata.topic_windows == "first" else len(item.windows)
            doc_topics = merge_document_scores(
                item.windows[:count],
                [o.topic_logits for o in outputs[:count]],  # type: ignore[misc]
            )
        return Scores(word_logits=word_logits, topic_logits=doc_topics)

    def run_encoder(self, prepared: Sequence[Prepared], batch_size: int) -> list[Scores]:
        """Run the encoder over every window and merge window outputs per document."""
        analysis = self.analysis(prepared, [None] * len(prepared), batch_size)
        while not analysis.done:
            analysis.step()
        return analysis.scores()

    def _word_logits(self, token_logits: np.ndarray, encoded: Encoded) -> np.ndarray:
        """Logits of each word's first sub-token; a word without pieces is forced to O."""
        n_tags = token_logits.shape[1]
        first = encoded.word_first_token
        word_logits = np.zeros((first.shape[0], n_tags), dtype=np.float32)
        has_piece = first >= 0
        word_logits[has_piece] = token_logits[first[has_piece]]
        word_logits[~has_piece, 1:] = -1e4
        return word_logits

    def decode(self, prepared: Prepared, scores: Scores, doc_id: str | None) -> DocumentResult:
        """Turn merged scores into entities (spans into the original text), groups and topics."""
        entities: list[Entity] = []
        if scores.word_logits is not None and len(prepared.words):
            log_probs = log_softmax(scores.word_logits)
            tag_ids = decode_tags(log_probs, self.entity_tags, self.metadata.decoder)
            texts = [word.text for word in prepared.words]
            spans = tags_to_spans(tag_ids, np.exp(log_probs), self.entity_tags)
            spans = split_known_pairs(join_known_names(spans, texts), texts)
            entities = to_entities(spans, prepared.words, prepared.normalised)
        entities, groups = name_and_group(prepared.normalised.original, entities)
        topic_scores: dict[str, float] = {}
        topics: list[tuple[str, float]] = []
        warnings: list[str] = []
        if scores.topic_logits is not None:
            probabilities = sigmoid(scores.topic_logits)
            labels = self.metadata.topic_labels
            topic_scores = {label: float(p) for label, p in zip(labels, probabilities, strict=True)}
            topics = topics_over_threshold(probabilities, labels, self.metadata.thresholds)
            warning = too_little_arabic(word.text for word in prepared.words)
            if warning is not None:
                topics = []
                warnings.append(warning)
        return DocumentResult(
            id=doc_id,
            entities=entities,
            topics=topics,
            topic_scores=topic_scores,
            n_tokens=prepared.encoded.n_tokens,
            entity_groups=groups,
            warnings=tuple(warnings),
        )

    # -- entry point -----------------------------------------------------------

    def analyze(
        self,
        texts: Sequence[str],
        ids: Sequence[str | None] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[DocumentResult]:
        """Analyse documents: entities with exact spans, and topic scores.

        Args:
            texts: Documents as the user sent them.
            ids: Optional id per document, echoed in the results.
            batch_size: Windows per encoder call.

        Returns:
            One result per text, in input order.
        """
        if ids is None:
            ids = [None] * len(texts)
        return self.analyze_prepared(self.prepare(texts), ids, batch_size)

    def analyze_prepared(
        self,
        prepared: Sequence[Prepared],
        ids: Sequence[str | None],
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[DocumentResult]:
        """:meth:`analyze` for documents already prepared (and checked against limits)."""
        analysis = self.analysis(prepared, ids, batch_size)
        while not analysis.done:
            analysis.step()
        return analysis.results()

    def analysis(
        self,
        prepared: Sequence[Prepared],
        ids: Sequence[str | None],
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Analysis:
        """The analysis of prepared documents as encoder calls to run one at a time.

        The HTTP server runs the steps of several requests' analyses in turns, so a
        small request never waits for all of a large one.
        """
        return Analysis(self, prepared, ids, batch_size)

    def story_inputs(self, results: Sequence[DocumentResult]) -> dict[str, list[Any]]:
        """What story evidence reads from the model's results, as ``StoryScorer`` arguments.

        Entity mentions (anchors among them count), the trained heads' own scores, and the
        primary section (for a definition's ``exclude_sections``); serving and calibration
        both take them from here, so a story is fitted on what it is scored with.
        """
        return {
            "entities": [[(e.text, e.label) for e in r.entities] for r in results],
            "heads": [r.topic_scores for r in results],
            "sections": [self.metadata.primary_section(r.topic_scores) for r in results],
        }

    def add_stories(
        self, texts: Sequence[str], results: Sequence[DocumentResult]
    ) -> list[DocumentResult]:
        """Score the story definitions and put them in ``topics`` and ``topic_scores``.

        A definition named like a trained head replaces that head's score: the
        definition was measured against it on the project's story set (README).
        """
        assert self.stories is not None
        probabilities = self.stories.score(texts, **self.story_inputs(results))
        thresholds = self.stories.thresholds()
        labels = self.stories.labels
        merged = []
        for result, row in zip(results, probabilities, strict=True):
            topic_scores = dict(result.topic_scores)
            topic_scores.update({label: float(p) for label, p in zip(labels, row, strict=True)})
            topics = [(label, score) for label, score in result.topics if label not in labels]
            if not result.warnings:
                # A text whose topics cannot be judged gets no stories either.
                topics += [
                    (label, float(p))
                    for label, p in zip(labels, row, strict=True)
                    if p >= thresholds[label]
                ]
            topics.sort(key=lambda item: -item[1])
            merged.append(replace(result, topics=topics, topic_scores=topic_scores))
        return merged


class Analysis:
    """Documents on their way through the encoder, one batch per :meth:`step`.

    >>> analysis = predictor.analysis(predictor.prepare(texts), ids)  # doctest: +SKIP
    >>> while not analysis.done:  # doctest: +SKIP
    ...     analysis.step()
    >>> results = analysis.results()  # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: Predictor,
        prepared: Sequence[Prepared],
        ids: Sequence[str | None],
        batch_size: int,
    ) -> None:
        """Plan the batches of ``prepared`` (see :meth:`Predictor.batches`)."""
        if len(ids) != len(prepared):
            raise ValueError(f"{len(ids)} ids for {len(prepared)} documents")
        self.predictor = predictor
        self.prepared = list(prepared)
        self.ids = list(ids)
        self._pending: deque[list[Window]] = deque(predictor.batches(self.prepared, batch_size))
        self._window_scores: list[dict[int, WindowScores]] = [{} for _ in self.prepared]

    @property
    def done(self) -> bool:
        """Whether every batch has been encoded."""
        return not self._pending

    @property
    def remaining_batches(self) -> int:
        """Encoder calls still to run."""
        return len(self._pending)

    @property
    def next_cost(self) -> int:
        """Token positions (padding, CLS and SEP included) of the next encoder call."""
        if not self._pending:
            return 0
        batch = self._pending[0]
        return len(batch) * (max(w.length for w in batch) + 2)

    def step(self, run_options: Any = None) -> int:
        """Encode the next batch; returns its number of windows.

        Raises:
            InferenceError: onnxruntime failed (or was stopped through ``run_options``).
        """
        batch = self._pending[0]
        scores = self.predictor.encode_batch(self.prepared, batch, run_options)
        self._pending.popleft()
        for window, window_scores in zip(batch, scores, strict=True):
            self._window_scores[window.doc][window.start] = window_scores
        return len(batch)

    def scores(self) -> list[Scores]:
        """Merged scores per document, once :attr:`done`."""
        if not self.done:
            raise RuntimeError(f"{len(self._pending)} encoder batches have not run yet")
        return [
            self.predictor.merge(item, window_scores)
            for item, window_scores in zip(self.prepared, self._window_scores, strict=True)
        ]

    def results(self) -> list[DocumentResult]:
        """One result per document, in order, once :attr:`done`; story scores merged in."""
        results = [
            self.predictor.decode(item, scores, doc_id)
            for item, scores, doc_id in zip(self.prepared, self.scores(), self.ids, strict=True)
        ]
        if self.predictor.stories is not None and results:
            texts = [item.normalised.original for item in self.prepared]
            results = self.predictor.add_stories(texts, results)
        return results


def load_predictor(
    model_dir: Path, threads: int | None = None, stories: Sequence[Path] = ()
) -> Predictor:
    """Load the model and the story definitions (the shipped ones plus ``stories``).

    Definitions are validated before the model loads, so a bad file fails first and
    fast, with one line naming the file and the field.

    Raises:
        ConfigError: A story definition is invalid.
        ModelLoadError: The directory is missing or not a usable model.
    """
    if stories:
        load_definitions(*stories)
    if not model_dir.is_dir():
        raise ModelLoadError(
            f"model directory not found: {model_dir}; pass --model DIR or set {MODEL_ENV}"
        )
    started = time.perf_counter()
    predictor = Predictor.load(model_dir, threads=threads)
    if predictor.metadata.topic_labels:
        predictor = predictor.with_stories(load_story_scorer(stories, threads=threads))
    logger.info("loaded %s in %.1f s", model_dir, time.perf_counter() - started)
    return predictor

"""Fixtures for the serving tests: a fake predictor that exercises the plumbing.

``FakePredictor`` computes its answer from the text alone, with exact spans, so
CLI and API tests can assert whole outputs without an ONNX model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from serving.errors import InferenceError
from serving.groups import name_and_group
from serving.metadata import ModelMetadata, SpecialTokens
from serving.predictor import DocumentResult
from serving.spans import Entity

PERSON_WORDS = frozenset({"ماكرون", "محمد"})
LOCATION_WORDS = frozenset({"بيروت", "القاهرة"})
_WORD = re.compile(r"\w+")


def fake_metadata() -> ModelMetadata:
    return ModelMetadata(
        name="fake-khabar",
        entity_types=["PER", "LOC"],
        entity_display_names={"PER": "شخص", "LOC": "مكان"},
        topic_labels=["politics", "sports"],
        topic_display_names={"politics": "سياسة", "sports": "رياضة"},
        topic_kinds={"politics": "section", "sports": "section"},
        thresholds={"politics": 0.5, "sports": 0.5},
        special_tokens=SpecialTokens(cls_id=0, sep_id=1, pad_id=2),
        base_encoder={"name": "fake-encoder"},
        metrics={"ner": {"f1": 0.9}},
        versions={"khabar": "0.1.0"},
    )


def fake_result(text: str, doc_id: str | None) -> DocumentResult:
    """PER for capitalised Latin words and PERSON_WORDS, LOC for LOCATION_WORDS."""
    entities = []
    words = list(_WORD.finditer(text))
    for match in words:
        word = match.group()
        if word in LOCATION_WORDS:
            label = "LOC"
        elif word in PERSON_WORDS or ("A" <= word[0] <= "Z"):
            label = "PER"
        else:
            continue
        entities.append(
            Entity(text=word, label=label, start=match.start(), end=match.end(), score=0.9)
        )
    politics = 0.9 if ("الرئيس" in text or "president" in text.lower()) else 0.1
    sports = 0.8 if ("مباراة" in text or "match" in text.lower()) else 0.05
    scores = {"politics": politics, "sports": sports}
    topics = sorted(((label, s) for label, s in scores.items() if s >= 0.5), key=lambda kv: -kv[1])
    entities, groups = name_and_group(text, entities)
    return DocumentResult(
        id=doc_id,
        entities=entities,
        topics=topics,
        topic_scores=scores,
        n_tokens=len(words),
        entity_groups=groups,
    )


@dataclass(frozen=True)
class FakePrepared:
    """A "tokenised" document: one token per word."""

    text: str

    @property
    def n_tokens(self) -> int:
        return len(_WORD.findall(self.text))


class FakeAnalysis:
    """``Predictor.analysis`` for the fake: one encoder "call" per ``batch_size`` tokens.

    ``on_step`` runs in the inference worker before each call (tests gate or slow it).
    """

    def __init__(self, predictor: FakePredictor, prepared, ids, batch_size: int) -> None:
        self.predictor = predictor
        self.prepared = list(prepared)
        self.ids = list(ids)
        self.calls = [
            (doc, start)
            for doc, item in enumerate(self.prepared)
            for start in range(0, max(1, item.n_tokens), batch_size)
        ]
        self.batch_size = batch_size
        self.steps_run = 0

    @property
    def done(self) -> bool:
        return self.steps_run == len(self.calls)

    @property
    def remaining_batches(self) -> int:
        return len(self.calls) - self.steps_run

    @property
    def next_cost(self) -> int:
        return self.batch_size

    def step(self, run_options=None) -> int:
        doc, _ = self.calls[self.steps_run]
        text = self.prepared[doc].text
        self.predictor.steps.append(text)
        if self.predictor.on_step is not None:
            self.predictor.on_step(text)
        if self.predictor.crash_on in text:
            raise RuntimeError("fake bug")
        if self.predictor.fail_on in text:
            raise InferenceError("inference failed: fake onnxruntime failure")
        self.steps_run += 1
        return 1

    def results(self) -> list[DocumentResult]:
        assert self.done
        texts = [p.text for p in self.prepared]
        self.predictor.calls.append(texts)
        return [fake_result(p.text, i) for p, i in zip(self.prepared, self.ids, strict=True)]


class FakePredictor:
    """Stands in for ``Predictor``: same methods, deterministic results.

    Args:
        fail_on: A text containing this raises InferenceError for its whole batch.
        crash_on: A text containing this raises RuntimeError (a bug, not bad input).
        interrupt_on_call: Raise KeyboardInterrupt on this call number (1-based).
    """

    def __init__(
        self,
        fail_on: str = "BOOM",
        crash_on: str = "CRASH",
        interrupt_on_call: int | None = None,
    ) -> None:
        self.metadata = fake_metadata()
        self.session = SimpleNamespace(threads=1)
        self.fail_on = fail_on
        self.crash_on = crash_on
        self.interrupt_on_call = interrupt_on_call
        self.calls: list[list[str]] = []
        self.batch_sizes: list[int] = []
        # The text of each encoder "call" made through analysis(), in order.
        self.steps: list[str] = []
        self.on_step: Callable[[str], None] | None = None
        self.stories = None

    def prepare(self, texts: Sequence[str]) -> list[FakePrepared]:
        return [FakePrepared(text) for text in texts]

    def analyze_prepared(self, prepared, ids, batch_size: int = 16) -> list[DocumentResult]:
        return self.analyze([p.text for p in prepared], ids, batch_size)

    def analysis(self, prepared, ids, batch_size: int = 16) -> FakeAnalysis:
        return FakeAnalysis(self, prepared, ids, batch_size)

    def topic_display_name(self, label: str) -> str:
        return self.metadata.topic_display_names.get(label, label)

    def topic_kind(self, label: str) -> str | None:
        return self.metadata.topic_kinds.get(label)

    def analyze(
        self,
        texts: Sequence[str],
        ids: Sequence[str | None] | None = None,
        batch_size: int = 16,
    ) -> list[DocumentResult]:
        self.calls.append(list(texts))
        self.batch_sizes.append(batch_size)
        if self.interrupt_on_call is not None and len(self.calls) == self.interrupt_on_call:
            raise KeyboardInterrupt
        if any(self.crash_on in text for text in texts):
            raise RuntimeError("fake bug")
        if any(self.fail_on in text for text in texts):
            raise InferenceError("inference failed: fake onnxruntime failure")
        ids = list(ids) if ids is not None else [None] * len(texts)
        return [fake_result(text, doc_id) for text, doc_id in zip(texts, ids, strict=True)]


@pytest.fixture(autouse=True)
def _loopback_without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to servers on 127.0.0.1; a proxy from the environment must not intercept."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_predictor_cls() -> type[FakePredictor]:
    """The class, for tests that need a fake with particular failures."""
    return FakePredictor


@pytest.fixture
def fake_predictor() -> FakePredictor:
    return FakePredictor()


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch, fake_predictor: FakePredictor) -> FakePredictor:
    """Make ``khabar predict`` load the fake instead of a model directory."""
    monkeypatch.setattr(
        "serving.cli.predict.load_predictor",
        lambda model_dir, threads=None, stories=(): fake_predictor,
    )
    return fake_predictor

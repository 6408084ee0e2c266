"""Fitting the lexical topic head: features built by the serving code, kept only if dev gains."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from serving.lexical import LexicalHead  # noqa: E402
from serving.metadata import ModelMetadata  # noqa: E402
from serving.predictor import Predictor  # noqa: E402
from training.data.topics import TopicExample  # noqa: E402
from training.lexical import (  # noqa: E402
    document_features,
    fit_lexical_head,
    inverse_document_frequency,
)

TEXTS = {
    "sport": "فاز الفريق في المباراة وسجل اللاعب هدفا في الدوري",
    "economy": "ارتفعت أسعار النفط وتراجعت البورصة وزاد التضخم في السوق",
    "politics": "اجتمع الرئيس مع الوزير في البرلمان لبحث الانتخابات والحكومة",
}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Predictor.load(tiny_model_dir, threads=1).with_metadata(max_length=8, stride=2)


def examples(labels: list[str], n: int, offset: int = 0) -> list[TopicExample]:
    """Articles whose section is given away by their words; other labels unknown."""
    sections = ["politics", "economy", "sport", "technology", "culture"]
    out = []
    for i in range(n):
        section = list(TEXTS)[(i + offset) % len(TEXTS)]
        values = {label: None for label in labels}
        values.update({s: float(s == section) for s in sections})
        out.append(
            TopicExample(id=f"a{i + offset}", text=TEXTS[section], source="t", labels=values)
        )
    return out


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_features_dotted_with_weights_are_the_logits_the_predictor_adds(tiny, pooling):
    tiny = tiny.with_metadata(topic_windows=pooling)
    texts = list(TEXTS.values()) + [" ".join(TEXTS.values())]
    prepared = tiny.prepare(texts)
    assert max(len(p.windows) for p in prepared) > 2
    vocab = tiny.tokenizer.get_vocab_size()
    n_labels = len(tiny.metadata.topic_labels)
    rng = np.random.default_rng(0)
    head = LexicalHead(
        inverse_document_frequency(prepared, vocab),
        rng.normal(size=(vocab, n_labels)).astype(np.float32),
        rng.normal(size=n_labels).astype(np.float32),
    )
    features = document_features(head.idf, prepared, first_window_only=pooling == "first")
    added = np.stack(
        [
            a.topic_logits - b.topic_logits
            for a, b in zip(
                tiny.with_lexical(head).run_encoder(prepared, 4),
                tiny.with_lexical(None).run_encoder(prepared, 4),
                strict=True,
            )
        ]
    )
    np.testing.assert_allclose(features @ head.weights + head.bias, added, rtol=1e-4, atol=1e-4)


def test_idf_is_highest_for_the_rarest_pieces(tiny):
    prepared = tiny.prepare(["أ ب", "أ ج", "أ ب"])
    idf = inverse_document_frequency(prepared, tiny.tokenizer.get_vocab_size())
    everywhere = prepared[0].encoded.ids[0]
    once = prepared[1].encoded.ids[-1]
    assert idf[once] > idf[everywhere]


def test_a_head_that_helps_on_dev_is_kept_and_reported(tiny):
    labels = tiny.metadata.topic_labels
    # The tiny encoder has learnt little about topics; the words give them away.
    head, report = fit_lexical_head(
        tiny.with_lexical(None),
        examples(labels, 30),
        examples(labels, 9, offset=1),
        ["politics", "economy", "sport", "technology", "culture"],
        c_grid=(32.0,),
        scale_grid=(1.0, 4.0),
    )
    assert len(report["trials"]) == 3  # the head alone, then each weight
    assert report["encoder_only"]["section_accuracy"] < 100.0
    assert report["kept"] and head is not None
    assert report["chosen"]["section_accuracy"] == 100.0
    assert head.weights.shape == (tiny.tokenizer.get_vocab_size(), len(labels))


def test_no_weight_to_try_keeps_no_head(tiny):
    labels = tiny.metadata.topic_labels
    head, report = fit_lexical_head(
        tiny, examples(labels, 12), examples(labels, 6), ["politics"], c_grid=(1.0,), scale_grid=()
    )
    assert head is None and report["kept"] is False


def test_export_records_the_decision_and_ships_the_file(tiny_model_dir):
    metadata = ModelMetadata.load(tiny_model_dir)
    report = metadata.training["lexical_head"]
    assert report["kept"] == (metadata.lexical_head is not None)
    if metadata.lexical_head:
        assert (tiny_model_dir / metadata.lexical_head).is_file()
    assert "lexical topic head" in (tiny_model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")

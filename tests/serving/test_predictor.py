"""Predictor on the tiny exported model, and on scripted sessions for exact behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.errors import ModelLoadError
from serving.metadata import ModelMetadata
from serving.normalise import normalise
from serving.predictor import Predictor
from serving.session import ENTITY_OUTPUT, TOPIC_OUTPUT


class ScriptedSession:
    """Tags tokens whose id is in ``loc_ids`` as B-LOC and every other token per ``default``."""

    threads = 1

    def __init__(self, n_tags: int, n_topics: int, loc_ids=(), default: int = 0):
        self.n_tags, self.n_topics = n_tags, n_topics
        self.loc_ids = set(loc_ids)
        self.default = default
        self.calls: list[tuple[int, int]] = []

    def run(self, input_ids, attention_mask):
        self.calls.append(input_ids.shape)
        logits = np.full(input_ids.shape + (self.n_tags,), -5.0, dtype=np.float32)
        logits[..., self.default] = 5.0
        is_loc = np.isin(input_ids, list(self.loc_ids))
        logits[is_loc] = -5.0
        logits[is_loc, 5] = 5.0  # B-LOC in O,B-PER,I-PER,B-ORG,I-ORG,B-LOC,...
        topics = np.tile(np.linspace(-2, 2, self.n_topics, dtype=np.float32), (len(input_ids), 1))
        return {ENTITY_OUTPUT: logits, TOPIC_OUTPUT: topics}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return Predictor.load(tiny_model_dir, threads=1)


def scripted(tiny: Predictor, **kwargs) -> Predictor:
    metadata: ModelMetadata = tiny.metadata
    session = ScriptedSession(len(metadata.entity_tags), len(metadata.topic_labels), **kwargs)
    return Predictor(metadata, tiny.tokenizer, session)


class TestTinyModel:
    def test_result_shape(self, tiny):
        [result] = tiny.analyze(["زار الرئيس ماكرون بيروت ."], ids=["d1"])
        data = result.to_dict()
        assert data["id"] == "d1"
        assert set(data["topic_scores"]) == set(tiny.metadata.topic_labels)
        for topic in data["topics"]:
            assert topic["score"] >= tiny.metadata.thresholds[topic["label"]] - 1e-4
        scores = [t["score"] for t in data["topics"]]
        assert scores == sorted(scores, reverse=True)

    def test_empty_and_mark_only_documents_keep_their_slot(self, tiny):
        results = tiny.analyze(["", "\u200f\u064e", "بيروت"])
        assert len(results) == 3
        assert results[0].entities == [] and results[1].entities == []
        assert set(results[0].topic_scores) == set(tiny.metadata.topic_labels)

    def test_int8_and_fp32_variants_both_load(self, tiny_model_dir):
        fp32 = Predictor.load(tiny_model_dir, threads=1, variant="fp32")
        assert fp32.analyze(["بيروت"])[0].topic_scores

    def test_missing_directory_and_variant_are_clear_errors(self, tmp_path, tiny_model_dir):
        with pytest.raises(ModelLoadError, match="not found"):
            Predictor.load(tmp_path / "nope")
        with pytest.raises(ModelLoadError, match="no 'fp16' variant"):
            Predictor.load(tiny_model_dir, variant="fp16")

    def test_corrupt_onnx_is_a_model_load_error(self, tmp_path, tiny_model_dir):
        import shutil

        broken = tmp_path / "broken"
        shutil.copytree(tiny_model_dir, broken)
        (broken / "model.int8.onnx").write_bytes(b"not an onnx file")
        with pytest.raises(ModelLoadError, match="model.int8.onnx: corrupt or changed"):
            Predictor.load(broken)
        # Without recorded sums (an older export) onnxruntime's refusal is the error.
        metadata = ModelMetadata.load(broken).model_copy(update={"file_sha256": {}})
        metadata.save(broken)
        with pytest.raises(ModelLoadError, match="cannot load ONNX model"):
            Predictor.load(broken)


MARKED_TEXT = st.lists(
    st.sampled_from(
        [
            "بيروت",
            "مُحَمَّد",
            "قـــال",
            "\u200fلبنان\u200e",
            "Paris",
            "😀",
            "\r\n",
            " ",
            "،",
            "(2024)",
            "ا\u064b",
            "الأمم",
            "\u200b",
            "٣٤",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=MARKED_TEXT)
def test_every_word_as_entity_has_exact_spans(tiny, text):
    predictor = scripted(tiny, default=1)  # every word B-PER: one entity per word
    [result] = predictor.analyze([text])
    normalised = normalise(text, predictor.metadata.normaliser)
    from serving.tokenise import split_words

    words = split_words(normalised.text)
    assert len(result.entities) == len(words)
    for entity, word in zip(result.entities, words, strict=True):
        assert text[entity.start : entity.end] == entity.text
        assert normalise(entity.text, predictor.metadata.normaliser).text == word.text


def test_long_document_finds_each_occurrence_once_across_windows(tiny):
    loc_id = tiny.tokenizer.encode(["بيروت"], is_pretokenized=True, add_special_tokens=False).ids[0]
    predictor = scripted(tiny, loc_ids=[loc_id])
    sentence = "وصل الوفد إلى بيروت صباح اليوم . "
    text = sentence * 30
    [result] = predictor.analyze([text], batch_size=4)
    windows = predictor.prepare([text])[0].windows
    assert len(windows) > 3
    starts = [m for m in range(len(text)) if text.startswith("بيروت", m)]
    assert [e.start for e in result.entities] == starts
    assert all(e.text == "بيروت" and e.label == "LOC" for e in result.entities)


def test_each_batch_holds_windows_of_one_document(tiny):
    predictor = scripted(tiny)
    texts = ["بيروت", "وصل الوفد إلى بيروت صباح اليوم . " * 10, "قال", "وصل الوفد"]
    prepared = predictor.prepare(texts)
    batches = predictor.batches(prepared, batch_size=2)
    assert all(len({w.doc for w in batch}) == 1 and len(batch) <= 2 for batch in batches)
    assert [w for batch in batches for w in batch] == [w for p in prepared for w in p.windows]
    assert len(prepared[1].windows) > 2


def test_a_documents_answer_does_not_depend_on_its_batch_mates(tiny):
    # The tiny int8 graph quantises activations per tensor, like the shipped one.
    assert tiny.session.path.name.endswith("int8.onnx")
    texts = [
        " ".join(["زار الرئيس ماكرون بيروت ."] * (1 + i % 5) + ["وصل الوفد إلى القاهرة ."] * i)
        for i in range(16)
    ]
    together = tiny.analyze(texts, batch_size=16)
    alone = [tiny.analyze([text], batch_size=16)[0] for text in texts]
    assert together == alone
    assert [r.topic_scores for r in together] == [r.topic_scores for r in alone]


def test_the_analysis_runs_one_encoder_call_per_step(tiny):
    predictor = scripted(tiny)
    texts = ["وصل الوفد إلى بيروت صباح اليوم . " * 30, "قال"]
    prepared = predictor.prepare(texts)
    analysis = predictor.analysis(prepared, ["a", "b"], batch_size=2)
    expected = len(predictor.batches(prepared, 2))
    steps = 0
    while not analysis.done:
        assert analysis.next_cost > 0
        analysis.step()
        steps += 1
    assert steps == expected == len(predictor.session.calls)
    assert [r.id for r in analysis.results()] == ["a", "b"]
    assert analysis.results() == predictor.analyze(texts, ["a", "b"], batch_size=2)


def test_sentence_windows_cut_long_documents_only_where_sentences_begin(tiny):
    predictor = tiny.with_metadata(window_plan="sentences", max_length=40, stride=8)
    text = " ".join(f"وصل الوفد {i} إلى بيروت صباح اليوم ." for i in range(30))
    [item] = predictor.prepare([text])
    assert len(item.windows) > 2
    words = item.words
    first = item.encoded.word_first_token
    # A window begins at the first token of a sentence's first word ("وصل").
    sentence_first_tokens = {int(first[i]) for i, w in enumerate(words) if w.text == "وصل"}
    starts = {w.start for w in item.windows}
    assert starts <= sentence_first_tokens
    assert all(w.length <= predictor.metadata.max_content for w in item.windows)
    for previous, current in zip(item.windows, item.windows[1:], strict=False):
        assert previous.end == current.start  # every token read once


def test_by_default_each_encoder_call_reads_one_window(tiny):
    predictor = scripted(tiny)
    texts = ["وصل الوفد إلى بيروت صباح اليوم . " * 30]
    predictor.analyze(texts)
    assert len(predictor.session.calls) > 1
    assert all(shape[0] == 1 for shape in predictor.session.calls)

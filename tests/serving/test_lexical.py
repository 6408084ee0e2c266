"""The lexical topic head: TF-IDF per window, logits added to the encoder's, saved as npz."""

from __future__ import annotations

import numpy as np
import pytest

from serving.errors import ModelLoadError
from serving.lexical import LexicalHead
from serving.predictor import Predictor, load_lexical_head


def make_head(vocab: int = 12, labels: int = 3, seed: int = 0) -> LexicalHead:
    rng = np.random.default_rng(seed)
    return LexicalHead(
        idf=rng.uniform(1.0, 3.0, vocab).astype(np.float32),
        weights=rng.normal(size=(vocab, labels)).astype(np.float32),
        bias=rng.normal(size=labels).astype(np.float32),
    )


class TestWindowFeatures:
    def test_sublinear_tf_times_idf_then_unit_length(self):
        head = make_head()
        pieces, values = head.window_features(np.array([4, 4, 4, 7]))
        assert pieces.tolist() == [4, 7]
        raw = np.array([(1 + np.log(3)) * head.idf[4], head.idf[7]])
        np.testing.assert_allclose(values, raw / np.linalg.norm(raw), rtol=1e-6)
        assert np.linalg.norm(values) == pytest.approx(1.0)

    def test_ids_outside_the_vocabulary_are_ignored(self):
        head = make_head(vocab=5)
        pieces, _ = head.window_features(np.array([1, 5, 99, -1]))
        assert pieces.tolist() == [1]

    def test_empty_window_scores_only_the_bias(self):
        head = make_head()
        np.testing.assert_allclose(head.logits(np.array([], dtype=np.int64)), head.bias)

    def test_logits_equal_the_dense_dot_product(self):
        head = make_head()
        ids = np.array([0, 3, 3, 11, 2, 2, 2])
        dense = np.zeros(head.idf.shape[0], dtype=np.float32)
        pieces, values = head.window_features(ids)
        dense[pieces] = values
        np.testing.assert_allclose(head.logits(ids), dense @ head.weights + head.bias, rtol=1e-5)


class TestFile:
    def test_save_and_load_round_trip(self, tmp_path):
        head = make_head()
        head.save(tmp_path / "lexical.npz")
        loaded = LexicalHead.load(tmp_path / "lexical.npz")
        for name in ("idf", "weights", "bias"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(head, name))

    def test_missing_or_corrupt_file_is_a_load_error(self, tmp_path):
        with pytest.raises(ModelLoadError, match="not found"):
            LexicalHead.load(tmp_path / "absent.npz")
        (tmp_path / "bad.npz").write_bytes(b"not a zip file")
        with pytest.raises(ModelLoadError, match="cannot read"):
            LexicalHead.load(tmp_path / "bad.npz")

    @pytest.mark.parametrize("keep", [0.5, 0.95])
    def test_a_truncated_npz_is_a_load_error(self, tmp_path, keep):
        make_head().save(tmp_path / "lexical.npz")
        data = (tmp_path / "lexical.npz").read_bytes()
        (tmp_path / "cut.npz").write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(ModelLoadError, match="cannot read lexical topic head"):
            LexicalHead.load(tmp_path / "cut.npz")

    def test_shapes_must_fit_together(self):
        with pytest.raises(ValueError, match="do not match"):
            LexicalHead(np.ones(4), np.ones((5, 2)), np.ones(2))


class TestInPredictor:
    @pytest.fixture(scope="class")
    def tiny(self, tiny_model_dir):
        return Predictor.load(tiny_model_dir, threads=1)

    def test_adds_length_weighted_window_logits_to_the_encoder_topics(self, tiny):
        vocab = tiny.tokenizer.get_vocab_size()
        head = make_head(vocab=vocab, labels=len(tiny.metadata.topic_labels), seed=3)
        # Windows of 6 tokens over a longer text: several windows per document.
        base = tiny.with_metadata(max_length=8, stride=2, topic_windows="mean")
        texts = ["زار الرئيس ماكرون بيروت ثم عاد الوزير إلى باريس في الصباح الباكر"]
        prepared = base.prepare(texts)
        assert len(prepared[0].windows) > 1
        without = base.with_lexical(None).run_encoder(prepared, 4)[0].topic_logits
        with_head = base.with_lexical(head).run_encoder(prepared, 4)[0].topic_logits
        windows = prepared[0].windows
        lengths = np.array([w.length for w in windows], dtype=np.float32)
        lexical = np.stack([head.logits(prepared[0].encoded.ids[w.start : w.end]) for w in windows])
        expected = without + (lexical * lengths[:, None]).sum(0) / lengths.sum()
        np.testing.assert_allclose(with_head, expected, rtol=1e-5, atol=1e-5)

    def test_a_head_for_other_labels_is_refused(self, tiny, tmp_path):
        vocab = tiny.tokenizer.get_vocab_size()
        make_head(vocab=vocab, labels=len(tiny.metadata.topic_labels) + 1).save(tmp_path / "x.npz")
        metadata = tiny.metadata.model_copy(update={"lexical_head": "x.npz"})
        with pytest.raises(ModelLoadError, match="labels"):
            load_lexical_head(tmp_path, metadata)

    def test_model_without_a_head_loads_none(self, tiny, tmp_path):
        metadata = tiny.metadata.model_copy(update={"lexical_head": None})
        assert load_lexical_head(tmp_path, metadata) is None

import numpy as np
import pytest

from serving.decode import (
    bio_tags,
    decode_tags,
    tags_to_spans,
    topics_over_threshold,
    viterbi_bio,
)

TAGS = bio_tags(["PER", "LOC"])  # O B-PER I-PER B-LOC I-LOC


def probs(rows):
    array = np.array(rows, dtype=np.float64) + 1e-9
    return array / array.sum(axis=1, keepdims=True)


class TestViterbi:
    def test_never_starts_with_inside_tag(self):
        p = probs([[0.1, 0.2, 0.6, 0.05, 0.05], [0.9, 0.025, 0.025, 0.025, 0.025]])
        path = [TAGS[i] for i in viterbi_bio(np.log(p), TAGS)]
        assert path[0] != "I-PER"
        assert path[0] == "B-PER"

    def test_inside_tag_must_continue_its_own_type(self):
        p = probs([[0.05, 0.05, 0.0, 0.9, 0.0], [0.1, 0.0, 0.6, 0.0, 0.3]])
        path = [TAGS[i] for i in viterbi_bio(np.log(p), TAGS)]
        assert path == ["B-LOC", "I-LOC"]

    def test_argmax_may_break_the_scheme(self):
        p = probs([[0.9, 0.05, 0.05, 0.0, 0.0], [0.1, 0.0, 0.9, 0.0, 0.0]])
        path = [TAGS[i] for i in decode_tags(np.log(p), TAGS, "argmax")]
        assert path == ["O", "I-PER"]

    def test_unknown_decoder_is_rejected(self):
        with pytest.raises(ValueError):
            decode_tags(np.zeros((1, 5)), TAGS, "beam")

    def test_empty_sequence(self):
        assert viterbi_bio(np.zeros((0, 5)), TAGS).shape == (0,)


class TestSpans:
    def test_groups_b_and_i_into_one_span_with_mean_score(self):
        ids = np.array([1, 2, 0, 3])
        p = probs([[0, 0.8, 0.2, 0, 0], [0, 0.4, 0.6, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0]])
        spans = tags_to_spans(ids, p, TAGS)
        assert [(s.label, s.first, s.last) for s in spans] == [("PER", 0, 1), ("LOC", 3, 3)]
        assert spans[0].score == pytest.approx(0.7, abs=1e-6)

    def test_stray_inside_tag_opens_a_span(self):
        spans = tags_to_spans(np.array([0, 4]), probs([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]), TAGS)
        assert [(s.label, s.first, s.last) for s in spans] == [("LOC", 1, 1)]


def test_topics_over_threshold_best_first():
    chosen = topics_over_threshold(
        np.array([0.2, 0.9, 0.55]), ["a", "b", "c"], {"a": 0.1, "b": 0.5, "c": 0.6}
    )
    assert chosen == [("b", pytest.approx(0.9)), ("a", pytest.approx(0.2))]

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.sentences import sentence_start_tokens, sentence_start_words
from serving.tokenise import split_words
from serving.windows import Window, merge_token_scores, plan_sentence_windows


def starts(text: str) -> list[str]:
    words = split_words(text)
    return [words[i].text for i in sentence_start_words(words, text)]


class TestSentenceStarts:
    def test_marks_followed_by_a_space_and_line_breaks_end_sentences(self):
        text = "قال الرئيس. ثم سافر! هل عاد؟ نعم\nوفي باريس"
        assert starts(text) == ["ثم", "هل", "نعم", "وفي"]

    def test_decimals_and_runs_of_dots_end_nothing(self):
        assert starts("بلغ 3.5 في المئة...وذهب") == []

    def test_a_mark_at_the_end_starts_nothing(self):
        assert starts("قال الرئيس.") == []

    def test_token_positions_skip_words_without_pieces(self):
        text = "أ. ب ج. د"
        words = split_words(text)
        # "ب" has no piece: its sentence begins at "ج".
        first = np.array([0, 1, -1, 2, 3, 4])
        assert sentence_start_tokens(words, text, first) == [2, 4]


class TestPlanSentenceWindows:
    def test_a_document_that_fits_is_one_window(self):
        assert plan_sentence_windows(0, 9, 10, 2, [3, 6]) == [Window(0, 0, 9)]

    def test_windows_end_where_sentences_begin_and_share_the_text_evenly(self):
        # Sentences of 4 tokens: 24 tokens in windows of at most 10 -> 3 windows of 8.
        windows = plan_sentence_windows(0, 24, 10, 2, [4, 8, 12, 16, 20])
        assert windows == [Window(0, 0, 8), Window(0, 8, 16), Window(0, 16, 24)]

    def test_a_sentence_longer_than_a_window_gets_overlapping_windows_of_its_own(self):
        windows = plan_sentence_windows(0, 26, 8, 2, [4, 20])
        assert windows[0] == Window(0, 0, 4)
        inner = [w for w in windows if w.start >= 4 and w.end <= 20]
        assert inner[0].start == 4 and inner[-1].end == 20 and len(inner) >= 3
        assert all(w.length <= 8 for w in windows)
        assert windows[-1] == Window(0, 20, 26)

    def test_rejects_stride_not_below_window(self):
        with pytest.raises(ValueError):
            plan_sentence_windows(0, 20, 8, 8, [])

    @given(
        n_tokens=st.integers(0, 2000),
        max_content=st.integers(1, 300),
        stride_fraction=st.floats(0.0, 0.99),
        cuts=st.lists(st.integers(-5, 2100), max_size=80),
    )
    def test_windows_cover_the_document_within_the_limit_cut_at_sentence_starts(
        self, n_tokens, max_content, stride_fraction, cuts
    ):
        stride = int(stride_fraction * max_content)
        windows = plan_sentence_windows(0, n_tokens, max_content, stride, cuts)
        assert windows[0].start == 0 and windows[-1].end == n_tokens
        assert all(w.length <= max_content for w in windows)
        assert all(b.start > a.start for a, b in zip(windows, windows[1:], strict=False))
        boundaries = sorted({c for c in cuts if 0 < c < n_tokens} | {0, n_tokens})
        for previous, current in zip(windows, windows[1:], strict=False):
            assert current.start <= previous.end  # nothing left out
            if current.start not in boundaries:  # only inside a sentence too long for one
                before = max(b for b in boundaries if b < current.start)
                after = min(b for b in boundaries if b > current.start)
                assert after - before > max_content
        # Every token gets the scores of exactly one window.
        scores = [np.full((w.length, 1), i, dtype=np.float32) for i, w in enumerate(windows)]
        merged = merge_token_scores(n_tokens, windows, scores)
        assert merged.shape == (n_tokens, 1)


def test_sentence_windows_do_not_cut_sentences_of_a_real_text():
    text = " ".join(["قال الرئيس الفرنسي إن المحادثات مستمرة ."] * 40)
    words = split_words(text)
    first = np.arange(len(words))  # one piece per word
    windows = plan_sentence_windows(
        0, len(words), 50, 10, sentence_start_tokens(words, text, first)
    )
    assert all(w.start % 7 == 0 and w.end % 7 == 0 for w in windows)
    assert all(w.length <= 50 for w in windows)

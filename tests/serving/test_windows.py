import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.windows import Window, merge_document_scores, merge_token_scores, plan_windows


class TestPlanWindows:
    def test_short_document_is_one_window(self):
        assert plan_windows(0, 5, 10, 2) == [Window(0, 0, 5)]

    def test_empty_document_still_gets_a_window(self):
        assert plan_windows(3, 0, 10, 2) == [Window(3, 0, 0)]

    def test_long_document_windows_overlap_by_stride_and_cover_everything(self):
        windows = plan_windows(0, 23, 8, 3)
        assert windows[0].start == 0 and windows[-1].end == 23
        for previous, current in zip(windows, windows[1:], strict=False):
            assert previous.end - current.start >= 3
        assert all(w.length <= 8 for w in windows)

    @given(
        n_tokens=st.integers(0, 3000),
        max_content=st.integers(1, 600),
        stride_fraction=st.floats(0.0, 0.99),
    )
    def test_fewest_equal_windows_that_overlap_by_at_least_stride(
        self, n_tokens, max_content, stride_fraction
    ):
        stride = int(stride_fraction * max_content)
        windows = plan_windows(0, n_tokens, max_content, stride)
        assert windows[0].start == 0 and windows[-1].end == n_tokens
        assert all(w.length <= max_content for w in windows)
        assert len({w.length for w in windows}) == 1  # nothing to pad in a batch
        for previous, current in zip(windows, windows[1:], strict=False):
            assert current.start > previous.start
            assert previous.end - current.start >= stride
        if n_tokens > max_content:
            assert len(windows) == math.ceil((n_tokens - stride) / (max_content - stride))

    def test_a_700_token_article_reads_four_windows_of_224_not_a_padded_tail(self):
        windows = plan_windows(0, 700, 254, 64)
        assert [w.length for w in windows] == [224] * 4

    def test_rejects_stride_not_below_window(self):
        with pytest.raises(ValueError):
            plan_windows(0, 20, 8, 8)


class TestMerge:
    def test_each_token_takes_the_window_where_it_has_most_context(self):
        windows = plan_windows(0, 10, 4, 2)
        scores = [np.full((w.length, 1), i, dtype=np.float32) for i, w in enumerate(windows)]
        merged = merge_token_scores(10, windows, scores).ravel().tolist()
        assert merged == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]

    def test_document_scores_are_length_weighted(self):
        windows = [Window(0, 0, 3), Window(0, 2, 3)]
        merged = merge_document_scores(windows, [np.array([3.0]), np.array([0.0])])
        assert merged[0] == pytest.approx(9 / 4)

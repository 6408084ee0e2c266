from hypothesis import given
from hypothesis import strategies as st

from serving.normalise import NormaliserSettings, normalise, normalised_text

ARABIC_WITH_MARKS = st.text(
    alphabet=st.sampled_from(
        list("محمدقالبيروتأإآىة ٠١٢ 12abc.,")
        + ["\u064e", "\u0651", "\u0640", "\u200f", "\u200b", "\r", "\n", "😀"]
    ),
    max_size=60,
)


class TestNormalise:
    def test_strips_diacritics_tatweel_and_bidi_marks(self):
        result = normalise("مُحَمَّـد\u200f")
        assert result.text == "محمد"

    def test_unifies_digits_and_optionally_letters(self):
        assert normalise("٢٠١٨").text == "2018"
        assert normalise("أحمد").text == "أحمد"
        unified = normalise("أحمد إلى مدرسة", NormaliserSettings(unify_letters=True))
        assert unified.text == "احمد الي مدرسه"

    def test_span_keeps_trailing_diacritics_but_not_bidi_marks(self):
        original = "قال مُحَمَّدٌ\u200f اليوم"
        result = normalise(original)
        start = result.text.index("محمد")
        s, e = result.span_to_original(start, start + 4)
        assert original[s:e] == "مُحَمَّدٌ"

    def test_nothing_removed_when_disabled(self):
        settings = NormaliserSettings(
            strip_diacritics=False, strip_tatweel=False, strip_invisible=False, unify_digits=False
        )
        text = "مُحَمَّـد\u200f ٣"
        assert normalise(text, settings).text == text

    @given(ARABIC_WITH_MARKS)
    def test_offset_map_points_at_the_same_characters(self, text):
        result = normalise(text)
        assert len(result.to_original) == len(result.text) + 1
        assert result.to_original[-1] == len(text)
        for index, char in enumerate(result.text):
            source = text[result.to_original[index]]
            assert normalise(source).text in (char, "") or char == " "
        assert list(result.to_original) == sorted(set(result.to_original))


@given(ARABIC_WITH_MARKS)
def test_normalised_text_is_normalise_without_the_map(text: str) -> None:
    for settings in (NormaliserSettings(), NormaliserSettings(unify_letters=True)):
        assert normalised_text(text, settings) == normalise(text, settings).text

from serving.tokenise import split_words


def test_split_words_keeps_offsets_and_separates_symbols():
    text = "قال أحمد: «السلام» 20% 😀"
    words = split_words(text)
    assert [w.text for w in words] == ["قال", "أحمد", ":", "«", "السلام", "»", "20", "%", "😀"]
    assert all(text[w.start : w.end] == w.text for w in words)


def test_split_words_keeps_marks_inside_words():
    words = split_words("مُحَمَّـد قال")
    assert [w.text for w in words] == ["مُحَمَّـد", "قال"]

import pytest

from serving.errors import DataError
from training.data.conll import read_conll, split_dev

TYPES = ["PER", "ORG", "LOC", "MISC"]


def write(tmp_path, text, name="c.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_sentences_and_maps_pers_to_per(tmp_path):
    path = write(tmp_path, "زار O\nماكرون B-PERS\nبيروت B-LOC\n\nقال O\n")
    sentences = read_conll(path, TYPES, {"PERS": "PER"})
    assert [s.tags for s in sentences] == [("O", "B-PER", "B-LOC"), ("O",)]
    assert sentences[0].text == "زار ماكرون بيروت"
    assert sentences[0].token_offsets()[1] == (4, 10)


def test_stray_inside_tag_becomes_begin(tmp_path):
    sentences = read_conll(write(tmp_path, "a O\nb I-LOC\nc I-LOC\n"), TYPES)
    assert sentences[0].tags == ("O", "B-LOC", "I-LOC")


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "a O\nb\n")
    with pytest.raises(DataError, match=r"c.txt:2: expected 'token TAG'"):
        read_conll(path, TYPES)


def test_unknown_tag_names_file_and_line(tmp_path):
    path = write(tmp_path, "a O\n\nb B-DATE\n")
    with pytest.raises(DataError, match=r"c.txt:3: unknown tag 'B-DATE'"):
        read_conll(path, TYPES)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_conll(tmp_path / "missing.txt", TYPES)
    with pytest.raises(DataError, match="no sentences"):
        read_conll(write(tmp_path, "\n\n"), TYPES)


def test_dev_is_the_last_block(tmp_path):
    path = write(tmp_path, "".join(f"w{i} O\n\n" for i in range(10)))
    train, dev = split_dev(read_conll(path, TYPES), 0.2)
    assert [s.tokens[0] for s in dev] == ["w8", "w9"]
    assert len(train) == 8

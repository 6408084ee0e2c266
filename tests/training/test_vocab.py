from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from serving.errors import ConfigError
from tests import tiny
from training.vocab import check_one_to_one, is_arabic_script, trim_vocabulary, used_token_ids

CORPUS = [["زار", "الرئيس", "بيروت", "."], ["قال", "أحمد", "سعيد"]]


@pytest.fixture(params=["wordpiece", "unigram"])
def tokenizer_path(request, tmp_path) -> Path:
    builders = {
        "wordpiece": tiny.build_wordpiece_tokenizer,
        "unigram": tiny.build_unigram_tokenizer,
    }
    build = builders[request.param]
    build(tmp_path)
    return tmp_path / "tokenizer.json"


def trim(path: Path, original: Tokenizer, keep_arabic: bool = False):
    return trim_vocabulary(
        path.read_text(encoding="utf-8"), used_token_ids(original, CORPUS), keep_arabic
    )


def test_every_arabic_piece_is_kept_whatever_the_corpus(tokenizer_path):
    original = Tokenizer.from_file(str(tokenizer_path))
    lean = trim(tokenizer_path, original, keep_arabic=False)
    full = trim(tokenizer_path, original, keep_arabic=True)
    vocab = original.get_vocab()
    arabic = {i for piece, i in vocab.items() if is_arabic_script(piece)}
    unused_arabic = arabic - used_token_ids(original, CORPUS)
    assert unused_arabic, "the fixture should have Arabic pieces the corpus does not use"
    assert arabic <= set(full.new_to_old.tolist())
    assert not unused_arabic <= set(lean.new_to_old.tolist())
    # Text outside the corpus keeps the base segmentation when Arabic pieces are kept.
    words = ["الأهلي", "غزة", "بيروت"]
    new = Tokenizer.from_str(full.tokenizer_json)
    mapped = full.new_to_old[new.encode(words, is_pretokenized=True).ids].tolist()
    assert mapped == original.encode(words, is_pretokenized=True).ids


def test_arabic_script_test():
    assert is_arabic_script("▁الرئيس") and is_arabic_script("##ية")
    assert not is_arabic_script("▁Paris") and not is_arabic_script("2024")


def test_trimmed_ids_map_one_to_one_on_the_corpus(tokenizer_path):
    original = Tokenizer.from_file(str(tokenizer_path))
    trimmed = trim(tokenizer_path, original)
    assert trimmed.size < original.get_vocab_size()
    new = Tokenizer.from_str(trimmed.tokenizer_json)
    assert check_one_to_one(original, new, trimmed.new_to_old, CORPUS) > 0
    assert np.all(np.diff(trimmed.new_to_old) > 0)


def test_text_outside_the_corpus_still_tokenises_without_unknowns(tokenizer_path):
    original = Tokenizer.from_file(str(tokenizer_path))
    trimmed = trim(tokenizer_path, original)
    new = Tokenizer.from_str(trimmed.tokenizer_json)
    words = ["الأهلي", "غزة"]
    old_unk = original.encode(words, is_pretokenized=True).tokens.count(original.id_to_token(1))
    encoding = new.encode(words, is_pretokenized=True)
    assert encoding.tokens[0] in ("[CLS]", "<s>")
    unknown = [t for t in encoding.tokens if t in ("[UNK]", "<unk>")]
    assert len(unknown) <= old_unk


def test_special_tokens_keep_their_roles(tokenizer_path):
    original = Tokenizer.from_file(str(tokenizer_path))
    trimmed = trim(tokenizer_path, original)
    new = Tokenizer.from_str(trimmed.tokenizer_json)
    a = original.encode(CORPUS[0], is_pretokenized=True)
    b = new.encode(CORPUS[0], is_pretokenized=True)
    assert a.tokens == b.tokens


def test_a_detected_difference_fails_the_check(tokenizer_path):
    original = Tokenizer.from_file(str(tokenizer_path))
    trimmed = trim(tokenizer_path, original)
    wrong = trimmed.new_to_old[::-1].copy()
    with pytest.raises(AssertionError):
        check_one_to_one(original, Tokenizer.from_str(trimmed.tokenizer_json), wrong, CORPUS)


def test_unsupported_tokenizer_model_is_rejected():
    with pytest.raises(ConfigError, match="Unigram and WordPiece"):
        trim_vocabulary('{"model": {"type": "BPE", "vocab": {}}, "added_tokens": []}', set())

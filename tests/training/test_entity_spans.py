"""Stand-off entity sets: joined with their corpus by id and text hash, scored on exact spans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.errors import DataError
from serving.spans import Entity
from tests.corpora import require_corpora
from training.data.entity_spans import SpanDocument, read_span_documents, text_sha256
from training.evaluate import span_report

TYPES = ["PER", "ORG", "LOC", "MISC"]
POSTS = [
    {"id": "1", "text": "زار الرئيس ماكرون بيروت أمس"},
    {"id": "1", "text": "قصف جوي على رفح"},  # a second post with the same id
]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_posts_are_found_by_id_and_hash(tmp_path):
    corpus = write(tmp_path / "posts.jsonl", POSTS)
    notes = write(
        tmp_path / "dev.jsonl",
        [
            {"id": "1", "sha256": text_sha256(POSTS[1]["text"]), "spans": [[12, 15, "LOC"]]},
            {"id": "1", "sha256": text_sha256(POSTS[0]["text"]), "spans": [[11, 17, "PER"]]},
        ],
    )
    first, second = read_span_documents(notes, corpus, TYPES)
    assert first.text[12:15] == "رفح" and second.text[11:17] == "ماكرون"


@pytest.mark.parametrize(
    "record, message",
    [
        ({"id": "9", "sha256": "x", "spans": []}, "not in"),
        ({"id": "1", "sha256": "0" * 64, "spans": []}, "not the one annotated"),
        ({"id": "1", "sha256": text_sha256(POSTS[0]["text"]), "spans": [[0, 99, "PER"]]}, "bad"),
        ({"id": "1", "sha256": text_sha256(POSTS[0]["text"]), "spans": [[0, 3, "X"]]}, "bad"),
        ({"id": "1"}, "not an annotation record"),
    ],
)
def test_a_bad_record_names_its_line(tmp_path, record, message):
    corpus = write(tmp_path / "posts.jsonl", POSTS)
    notes = write(tmp_path / "dev.jsonl", [record])
    with pytest.raises(DataError, match=message) as error:
        read_span_documents(notes, corpus, TYPES)
    assert "dev.jsonl:1" in str(error.value)


class FixedPredictor:
    """Returns fixed entities, to test the scoring alone."""

    def __init__(self, entities: list[list[tuple[int, int, str]]]):
        self.entities = entities

    def analyze(self, texts, batch_size=32):
        class Result:
            def __init__(self, entities):
                self.entities = entities

        return [
            Result(
                [Entity(text=t[s:e], label=label, start=s, end=e, score=1.0) for s, e, label in es]
            )
            for t, es in zip(texts, self.entities, strict=True)
        ]


def test_exact_spans_score_and_near_misses_count_twice():
    documents = [
        SpanDocument("a", POSTS[0]["text"], ((11, 17, "PER"), (18, 23, "LOC"))),
        SpanDocument("b", POSTS[1]["text"], ((12, 15, "LOC"),)),
    ]
    predicted = [[(11, 17, "PER"), (18, 23, "ORG")], [(12, 15, "LOC"), (0, 3, "MISC")]]
    report = span_report(FixedPredictor(predicted), documents)
    # tp 2 (PER, LOC in b); fp 2 (ORG, MISC); fn 1 (LOC in a)
    assert report["precision"] == 50.0 and report["recall"] == pytest.approx(66.67)
    assert report["per_type"]["PER"]["f1"] == 100.0
    assert report["per_type"]["LOC"]["recall"] == 50.0
    assert report["n_gold"] == 3


def test_the_project_fignews_set_matches_its_corpus():
    repo = Path(__file__).resolve().parents[2]
    name = "topics/fignews-2024/gaza-war-posts.jsonl"
    corpus = require_corpora(name) / name
    folder = repo / "tests" / "data" / "fignews_entities"
    dev = read_span_documents(folder / "dev.jsonl", corpus, TYPES)
    test = read_span_documents(folder / "test.jsonl", corpus, TYPES)
    assert len(dev) + len(test) >= 300
    assert sum(len(d.spans) for d in dev + test) >= 1500
    assert not {(d.id, d.text) for d in dev} & {(d.id, d.text) for d in test}

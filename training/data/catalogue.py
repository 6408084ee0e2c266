"""The public corpora khabar's recipes train on: their place, licence and source.

The project never copies corpus texts into its own tree; ``khabar data check`` uses
this catalogue to tell a user what to fetch and where to put it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Corpus:
    """One public corpus: its directory under the data root, licence, source and format."""

    name: str
    directory: str
    licence: str
    source: str
    layout: str


CORPORA: tuple[Corpus, ...] = (
    Corpus(
        name="ANERcorp (CAMeL Lab release)",
        directory="ner/anercorp",
        licence="CC BY-SA 4.0",
        source="https://camel.abudhabi.nyu.edu/anercorp/ (Benajiba & Rosso 2007; CAMeL Lab "
        "train/test split)",
        layout="train.txt and test.txt: one 'token TAG' per line (BIO over PERS, LOC, ORG, MISC), "
        "a blank line between sentences",
    ),
    Corpus(
        name="ANT v2.1",
        directory="topics/ant-v2.1",
        licence="Apache-2.0 (cite Chouigui et al. 2017, 2021)",
        source="ANT corpus v2.1, published by its authors (Chouigui, Ben Khiroun & Elayeb: "
        "'ANT Corpus: An Arabic News Text Collection for Textual Classification')",
        layout="*.jsonl: one article per line with id, source, section, date, title, abstract, "
        "text",
    ),
    Corpus(
        name="FIGNEWS 2024",
        directory="topics/fignews-2024",
        licence="MIT",
        source="https://github.com/CAMeL-Lab/FIGNEWS-2024 (ArabicNLP 2024 shared task)",
        layout="gaza-war-posts.jsonl: one post per line with id, source_language, text "
        "(Arabic: the original or its machine translation)",
    ),
)


def corpus_of(name: str) -> Corpus | None:
    """The catalogued corpus a data file (a name under the data root) belongs to."""
    for corpus in CORPORA:
        if name == corpus.directory or name.startswith(corpus.directory + "/"):
            return corpus
    return None

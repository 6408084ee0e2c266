"""The project's labelled story set (``tests/data/stories``), joined to its texts.

The set is stand-off: each line names a corpus (``ant`` or ``fignews``), an id, the
sha256 of the text the model reads (ANT: title and text joined by a newline; FIGNEWS:
the post) and a 0/1 label per story. Texts come from the data root; a text whose hash
differs is an error, so figures are never computed on other texts than were labelled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from serving.data_root import resolve_data_root
from serving.errors import DataError
from training.config import RECIPES_DIR, load_config
from training.data.entity_spans import text_sha256
from training.data.topics import read_jsonl

STORY_SET_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "stories"
DATA_ROOT = resolve_data_root()
ANT_GLOB = "topics/ant-v2.1/*.jsonl"
FIGNEWS_FILE = "topics/fignews-2024/gaza-war-posts.jsonl"
STORY_LABELS = ("russia_ukraine", "middle_east_conflict")
# Texts the project wrote itself (corpus ``project``, text inline): a dev-side check only.
WRITTEN_FILE = "written.jsonl"
WRITTEN_CORPUS = "project"


@dataclass(frozen=True)
class StoryItem:
    """One labelled text."""

    corpus: str
    id: str
    text: str
    section: str | None
    labels: dict[str, int]


def data_available(data_root: Path = DATA_ROOT) -> bool:
    """Whether the ANT and FIGNEWS files the story set points at are present."""
    return any(data_root.glob(ANT_GLOB)) and (data_root / FIGNEWS_FILE).is_file()


Texts = dict[tuple[str, str], list[tuple[str, str | None]]]


def recipe_section_map(recipe: Path = RECIPES_DIR / "default.yaml") -> dict[str, str]:
    """ANT section -> section label, as a recipe (the shipped one by default) maps them."""
    topics = load_config(recipe).topics
    return dict(topics.section_map) if topics is not None else {}


def corpus_texts(data_root: Path = DATA_ROOT, section_map: dict[str, str] | None = None) -> Texts:
    """``(corpus, id) -> [(text, section label), ...]``: ids repeat in both corpora.

    ``section_map`` maps ANT sections to section labels; without it the labels are ``None``.
    """
    section_map = section_map or {}
    texts: Texts = {}
    for path in sorted(data_root.glob(ANT_GLOB)):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    text = f"{record['title'].strip()}\n{record['text'].strip()}"
                    section = section_map.get(record.get("section", ""))
                    texts.setdefault(("ant", str(record["id"])), []).append((text, section))
    fignews = data_root / FIGNEWS_FILE
    if fignews.is_file():
        with fignews.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    key = ("fignews", str(record["id"]))
                    texts.setdefault(key, []).append((record["text"], None))
    return texts


def load_story_set(
    split: str,
    data_root: Path = DATA_ROOT,
    set_dir: Path = STORY_SET_DIR,
    texts: Texts | None = None,
) -> list[StoryItem]:
    """The labelled texts of ``split`` (``dev`` or ``test``).

    Raises:
        DataError: The split file or a text is missing, or a text's hash differs.
    """
    path = set_dir / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: story set split not found")
    texts = corpus_texts(data_root, recipe_section_map()) if texts is None else texts
    items = []
    for number, record in read_jsonl(path, (), ("corpus", "id", "sha256", *STORY_LABELS)):
        key = (record["corpus"], str(record["id"]))
        if key not in texts:
            raise DataError(f"{path}:{number}: {key[0]} text {key[1]} not in {data_root}")
        found = [pair for pair in texts[key] if text_sha256(pair[0]) == record["sha256"]]
        if not found:
            raise DataError(f"{path}:{number}: {key[0]} text {key[1]} differs from its sha256")
        text, section = found[0]
        items.append(
            StoryItem(
                corpus=key[0],
                id=key[1],
                text=text,
                section=section,
                labels={label: int(record[label]) for label in STORY_LABELS},
            )
        )
    return items


def load_written(path: Path = STORY_SET_DIR / WRITTEN_FILE) -> list[StoryItem]:
    """The texts the project wrote itself, labelled when written; none when the file is absent.

    They are a dev-side check only: never in a test figure, and not fitted on either
    (fitted beside the corpus texts they lowered cross-validated dev F1, 72.0 to 54.5 for
    ``russia_ukraine``: written news is cleaner than the real thing).

    Raises:
        DataError: A line lacks its text or a label.
    """
    if not path.is_file():
        return []
    return [
        StoryItem(
            corpus=WRITTEN_CORPUS,
            id=str(record["id"]),
            text=record["text"],
            section=None,
            labels={label: int(record[label]) for label in STORY_LABELS},
        )
        for _, record in read_jsonl(path, ("text",), ("id", *STORY_LABELS))
    ]

"""Clean names and entity groups measured on the hand-made fixtures (tests/fixtures).

- names: share of real ANERcorp and ANT mentions whose ``name`` equals the
  hand-written clean name, and mentions whose name lost a letter of the gold name;
- groups: pairwise grouping precision, recall and F1 on ANT articles with
  hand-made gold groups (reads the articles from the corpus, never copies them).

::

    python -m benchmarks.articles [--corpus ../shared/data/topics/ant-v2.1]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from serving.groups import name_and_group
from serving.names import clean_names, surface
from serving.spans import Entity
from training.config import resolve_data_root

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
NAMES_FIXTURE = FIXTURES / "clean_names.json"
GROUPS_FIXTURE = FIXTURES / "entity_groups_ant.json"


@dataclass(frozen=True)
class NameScore:
    """How many clean names were right, and which lost a letter of the gold name."""

    total: int
    right: int
    wrong: list[tuple[str, str, str]]
    lost_letters: list[tuple[str, str, str]]

    @property
    def accuracy(self) -> float:
        """Share of names right."""
        return self.right / self.total if self.total else 0.0


@dataclass(frozen=True)
class PairScore:
    """Pairwise grouping counts: pairs put together, pairs that belong together, both."""

    predicted: int
    gold: int
    correct: int

    @property
    def precision(self) -> float:
        """Share of predicted pairs that are gold pairs."""
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        """Share of gold pairs that were predicted."""
        return self.correct / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def score_names(rows: Sequence[dict]) -> NameScore:
    """Score ``clean_names`` on fixture rows (mention, label, gold name, context mentions)."""
    right = 0
    wrong, lost = [], []
    for row in rows:
        context = list(row.get("context", []))
        mentions = [row["text"], *context]
        labels = [row["label"], *[None] * len(context)]
        name = clean_names(mentions, labels)[0]
        if name == row["name"]:
            right += 1
        else:
            wrong.append((row["text"], name, row["name"]))
        if not name.endswith(row["name"]) and surface(row["text"]).endswith(row["name"]):
            lost.append((row["text"], name, row["name"]))
    return NameScore(total=len(rows), right=right, wrong=wrong, lost_letters=lost)


def pairs(groups: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    """Every unordered pair of mentions that share a group."""
    return {pair for group in groups for pair in combinations(sorted(group), 2)}


def read_ant(corpus: Path, ids: set[str]) -> dict[str, str]:
    """The ANT articles with these ids, as khabar reads them: title, a line break, text."""
    texts: dict[str, str] = {}
    for shard in sorted(corpus.glob("*.jsonl")):
        with shard.open(encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if record["id"] in ids:
                    texts[record["id"]] = f"{record['title']}\n{record['text']}"
    return texts


def score_groups(articles: Sequence[dict], texts: dict[str, str]) -> PairScore:
    """Pairwise scores of ``name_and_group`` against the gold groups, over all articles."""
    predicted = gold = correct = 0
    for article in articles:
        text = texts[article["id"]]
        entities = []
        for start, end, label, mention in article["mentions"]:
            if text[start:end] != mention:
                raise ValueError(f"{article['id']}: {mention!r} is not at [{start}, {end})")
            entities.append(Entity(text=mention, label=label, start=start, end=end, score=1.0))
        _, groups = name_and_group(text, entities)
        found = pairs(group.mentions for group in groups)
        expected = pairs(article["groups"])
        predicted += len(found)
        gold += len(expected)
        correct += len(found & expected)
    return PairScore(predicted=predicted, gold=gold, correct=correct)


def main() -> None:
    """Print the name accuracy and the pairwise grouping scores."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=resolve_data_root() / "topics" / "ant-v2.1",
        help="ANT v2.1 directory (default: under the data root)",
    )
    parser.add_argument("--errors", action="store_true", help="list every wrong name")
    args = parser.parse_args()

    fixture = json.loads(NAMES_FIXTURE.read_text(encoding="utf-8"))
    for part in ("mentions", "heldout"):
        names = score_names(fixture[part])
        print(
            f"clean names ({part}): {names.right}/{names.total} right "
            f"({100 * names.accuracy:.1f}%), {len(names.lost_letters)} lost a letter of the name"
        )
        for text, name, expected in names.wrong if args.errors else []:
            print(f"  {text!r} -> {name!r}, expected {expected!r}")

    articles = json.loads(GROUPS_FIXTURE.read_text(encoding="utf-8"))["articles"]
    texts = read_ant(args.corpus, {article["id"] for article in articles})
    if len(texts) < len(articles):
        print(f"groups: skipped, {len(articles) - len(texts)} articles missing from {args.corpus}")
        return
    score = score_groups(articles, texts)
    mentions = sum(len(article["mentions"]) for article in articles)
    print(
        f"groups ({len(articles)} articles, {mentions} mentions, {score.gold} gold pairs): "
        f"precision {100 * score.precision:.1f}, recall {100 * score.recall:.1f}, "
        f"F1 {100 * score.f1:.1f}"
    )


if __name__ == "__main__":
    main()

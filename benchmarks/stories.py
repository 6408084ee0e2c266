"""Story figures on the project's story test set, and what story scoring costs.

    python -m benchmarks.stories [--model models/default] [--threads 2] [--split test]

In one run: P/R/F1 of ``russia_ukraine`` and ``middle_east_conflict`` for the story
definitions (``configs/stories``), the keyword rules alone (``configs/stories.yaml``)
and the model's trained heads, plus the same on the texts the project wrote itself
(``tests/data/stories/written.jsonl``, a check kept out of the test figures); then
int8 docs/s of the model alone and with the story definitions on the same texts, and
the story pass's ms per article: on the story set's texts (drawn by story keywords, so
nearly all pass the anchor gate) and on a seeded sample of ANT articles (news at large).

``--pooled`` adds option 2 of the embedding: the fine-tuned model's own mean-pooled
first window instead of the base e5 pass (``benchmarks/story_pooled.py``), with its
combiners fitted on dev in this run by the same procedure as the shipped ones
(``training/story_calibration.py``), and the cost of that pooling pass.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import Predictor
from serving.stories.schema import DEFAULT_STORIES_DIR, load_definitions
from serving.stories.scorer import StoryScorer, load_story_scorer
from serving.stories.terms import fold
from training.story_eval import collect, fit_combiner, head_is_useful, report
from training.story_set import (
    DATA_ROOT,
    StoryItem,
    Texts,
    corpus_texts,
    load_story_set,
    load_written,
    recipe_section_map,
)


def _docs_per_second(predictor: Predictor, texts: list[str], repeats: int) -> float:
    predictor.analyze(texts[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.analyze(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def _ant_sample(corpora: Texts, args: argparse.Namespace) -> list[str]:
    """A seeded sample of ANT articles: news at large, not drawn by story keywords."""
    texts = [versions[0][0] for (corpus, _), versions in corpora.items() if corpus == "ant"]
    return random.Random(args.seed).sample(sorted(texts), min(args.timing_docs, len(texts)))


def _cost(
    predictor: Predictor, scorer: StoryScorer, texts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """int8 docs/s with and without the story definitions on ``texts``, in one run."""
    alone = _docs_per_second(predictor, texts, args.repeats)
    with_stories = _docs_per_second(predictor.with_stories(scorer), texts, args.repeats)
    gated = int(scorer.anchor_counts([fold(text) for text in texts]).any(axis=1).sum())
    started = time.perf_counter()
    scorer.encoder.embed(texts)
    embed_ms = 1000 * (time.perf_counter() - started) / len(texts)
    return {
        "documents": len(texts),
        "documents_naming_an_anchor": gated,
        "threads": args.threads,
        "int8_docs_per_s": round(alone, 2),
        "int8_with_stories_docs_per_s": round(with_stories, 2),
        "added_time_percent": round(100 * (alone / with_stories - 1), 1),
        "story_encoder_ms_per_article_ungated": round(embed_ms, 1),
        "story_encoder_mb": scorer.encoder.info.size_mb,
        "story_encoder_max_tokens": scorer.encoder.info.max_tokens,
    }


def _option_2(
    predictor: Predictor,
    items: list[StoryItem],
    results: list[Any],
    corpora: Texts,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Story figures with the fine-tuned model's pooled output, fitted on dev here."""
    from benchmarks.story_pooled import pooled_encoder
    from training.story_calibration import REGULARISATION

    encoder = pooled_encoder(predictor, threads=args.threads)
    scorer = StoryScorer(encoder, load_definitions(DEFAULT_STORIES_DIR))  # type: ignore[arg-type]
    dev_items = load_story_set("dev", args.data, texts=corpora)
    dev = collect(dev_items, predictor, scorer)
    for index, story in enumerate(scorer.stories):
        combiner = fit_combiner(
            dev.evidence[:, index, :],
            dev.labels[story.name],
            c=REGULARISATION,
            exclude=() if head_is_useful(dev, story.name) else ("model_head",),
        )
        scorer.stories[index] = replace(story, combiner=combiner)
    figures = report(collect(items, predictor, scorer, results), scorer)
    texts = [item.text for item in items[: args.timing_docs]]
    started = time.perf_counter()
    encoder.embed(texts)
    figures["pooling_pass_ms_per_article_measured_as_second_pass"] = round(
        1000 * (time.perf_counter() - started) / len(texts), 1
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    """Command line: print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--data", type=Path, default=DATA_ROOT)
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timing-docs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13, help="ANT sample for the cost")
    parser.add_argument("--pooled", action="store_true", help="also measure option 2")
    args = parser.parse_args(argv)

    predictor = Predictor.load(args.model, threads=args.threads)
    scorer = load_story_scorer(threads=args.threads)
    if scorer is None:
        raise SystemExit("no story encoder: python -m training.story_encoder first")
    corpora = corpus_texts(args.data, recipe_section_map())  # read once, used three times
    items = load_story_set(args.split, args.data, texts=corpora)
    results = predictor.analyze([item.text for item in items])
    figures: dict[str, Any] = {
        "definition_option_1_base_e5": report(collect(items, predictor, scorer, results), scorer),
        "written_texts_dev_side_check": report(collect(load_written(), predictor, scorer), scorer),
    }
    if args.pooled:
        figures["definition_option_2_fine_tuned_pooled"] = _option_2(
            predictor, items, results, corpora, args
        )

    texts = [item.text for item in items[: args.timing_docs]]
    figures["cost_story_set"] = _cost(predictor, scorer, texts, args)
    figures["cost_ant_news"] = _cost(predictor, scorer, _ant_sample(corpora, args), args)
    print(json.dumps(figures, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

"""Fit the shipped story definitions' combiners on the project's dev story set.

    python -m training.story_calibration            # rewrites the combiner blocks
    python -m training.story_calibration --dry-run  # prints them only

For each definition with labels in ``tests/data/stories/dev.jsonl`` the evidence of
every dev text is measured through the model (for its entities and trained heads) and
the story encoder, a standardised L2 logistic regression is fitted (C=0.1: 13 to 65
positives do not support more), and the threshold is the best-F1 one on 5-fold
cross-validated dev probabilities. The model's trained head of the same name is one of
the features only where it reaches F1 50 on dev by itself (``head_is_useful``). The test
split is never read here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import Predictor
from serving.stories.schema import DEFAULT_STORIES_DIR, load_definitions
from serving.stories.scorer import StoryScorer, load_story_scorer
from training.story_eval import collect, fit_combiner, fit_default_combiner, head_is_useful
from training.story_set import DATA_ROOT, load_story_set

REGULARISATION = 0.1
_COMBINER_BLOCK = re.compile(r"\n# Combiner fitted by.*\Z|\ncombiner:.*\Z", re.S)


def write_combiner(path: Path, combiner_yaml: str) -> None:
    """Replace (or append) the ``combiner:`` block at the end of a definition file."""
    text = _COMBINER_BLOCK.sub("", path.read_text(encoding="utf-8")).rstrip("\n")
    path.write_text(f"{text}\n{combiner_yaml}", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Command line: calibrate and write the combiner blocks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--stories", type=Path, default=DEFAULT_STORIES_DIR)
    parser.add_argument("--data", type=Path, default=DATA_ROOT)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    predictor = Predictor.load(args.model)
    scorer = load_story_scorer(shipped=args.stories)
    assert isinstance(scorer, StoryScorer)
    items = load_story_set("dev", args.data)
    collected = collect(items, predictor, scorer)
    for s, story in enumerate(scorer.stories):
        gold = collected.labels[story.name]
        if not gold.any():
            continue
        combiner = fit_combiner(
            collected.evidence[:, s, :],
            gold,
            c=REGULARISATION,
            calibrated_on=f"tests/data/stories/dev.jsonl ({len(gold)} texts, "
            f"{int(gold.sum())} positives), model {predictor.metadata.name}",
            exclude=() if head_is_useful(collected, story.name) else ("model_head",),
        )
        block = (
            "# Combiner fitted by `python -m training.story_calibration` (do not edit by hand).\n"
            "combiner:\n"
            f"  bias: {combiner.bias}\n"
            f"  weights: {json.dumps(combiner.weights)}\n"
            f"  threshold: {combiner.threshold}\n"
            f"  calibrated_on: {json.dumps(combiner.calibrated_on)}\n"
        )
        sys.stdout.write(f"{story.name}:\n{block}\n")
        if not args.dry_run:
            write_combiner(args.stories / f"{story.name}.yaml", block)
    default = fit_default_combiner(collected, c=REGULARISATION)
    sys.stdout.write(
        "default combiner for stories without labelled data (DEFAULT_COMBINER in "
        f"serving/stories/scorer.py):\n{default.model_dump_json()}\n"
    )
    load_definitions(args.stories)  # the rewritten files must still validate


if __name__ == "__main__":
    main()

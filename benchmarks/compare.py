"""Two model directories' int8 throughput on the same articles, in one run.

A retrained model must not be slower than the one it replaces; machine load drifts
over minutes, so the two are timed in alternating rounds on the same documents and
each model's figure is the median over rounds.

    python -m benchmarks.compare OLD_MODEL NEW_MODEL --data ../shared/data --articles 300
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import statistics
import time
from pathlib import Path

from serving.predictor import Predictor


def sample_articles(data_root: Path, count: int, seed: int) -> list[str]:
    """A seeded sample of ANT articles (title and text, as the topic corpus joins them)."""
    texts = []
    for path in sorted(glob.glob(str(data_root / "topics" / "ant-v2.1" / "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            texts += [
                f"{r['title']}\n{r['text']}" for r in map(json.loads, handle) if r.get("text")
            ]
    if not texts:
        raise SystemExit(f"no ANT articles under {data_root}/topics/ant-v2.1")
    return random.Random(seed).sample(texts, min(count, len(texts)))


def main(argv: list[str] | None = None) -> None:
    """Print docs/s of each model, per round and as the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2, type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    texts = sample_articles(args.data, args.articles, args.seed)
    predictors = [Predictor.load(m, threads=args.threads) for m in args.models]
    for predictor in predictors:
        predictor.analyze(texts[:8])  # warm-up
    rates: list[list[float]] = [[] for _ in predictors]
    for round_number in range(args.rounds):
        for index, predictor in enumerate(predictors):
            started = time.perf_counter()
            predictor.analyze(texts)
            rates[index].append(len(texts) / (time.perf_counter() - started))
        print(f"round {round_number + 1}: " + ", ".join(f"{r[-1]:.2f}" for r in rates))
    medians = [statistics.median(r) for r in rates]
    for model, median in zip(args.models, medians, strict=True):
        print(f"{model}: {median:.2f} docs/s (median of {args.rounds} rounds)")
    print(f"new / old: {medians[1] / medians[0]:.3f}")


if __name__ == "__main__":
    main()

"""Ray engine scaling: the local engine against Ray actor layouts, and a model of N nodes.

    python -m benchmarks.ray_scaling --articles 1000 [--name vm] [--data DIR] [--out DIR]

In one run, on the same ANT articles (a seeded sample of ``--articles`` from every
ant-v2.1 shard, title and text as khabar reads them, in corpus order):

- **local**: what ``khabar predict`` does (model load, then ``predict_records``), with
  as many threads as CPUs;
- **Ray, 1 actor x CPUs threads** and **Ray, CPUs actors x 1 thread**: ``run`` of
  ``serving.ray_batch.engine`` on a local Ray started once beforehand (a cluster is
  started once for many jobs, so its start is timed apart, not charged to a job).

Every figure is documents per second over the whole job (the local model load, the
actors' start and model loads, reading, packing and writing all included), and over
the analysis alone. From the same runs come the Ray overheads the model of N nodes
uses: a job's start (call to first batch back, less that batch's own analysis), the
actor time lost per batch (hand-over, writing, the tail), one reading task's rate
(read, tokenise, pack) and the writer's rate (this process, one for the whole job).

Results: ``<date>-<machine>-ray-scaling.md`` and ``.json`` under ``--out``
(``benchmarks/results``). The model's figures are computed, not measured; the
Markdown says which is which.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info
from benchmarks.report import write_results
from serving.cli.readers import FieldNames, read_inputs
from serving.cli.records import predict_records
from serving.data_root import resolve_data_root
from serving.limits import DocumentLimits
from serving.metadata import DEFAULT_MODEL_DIR
from serving.predictor import load_predictor
from serving.ray_batch.engine import ACTORS_PER_READER, RaySettings, import_ray, job_of, run
from serving.ray_batch.inputs import TokenCounter, pack, read_partitions, resolve_inputs
from serving.ray_batch.output import OutputDir

ANT_DIR = "topics/ant-v2.1"
SEED = 13
NODE_COUNTS = (1, 2, 4, 8, 16, 32, 64)
ARCHIVE_DOCUMENTS = 10_000_000


def sample_articles(data_root: Path, count: int, seed: int = SEED) -> list[dict[str, str]]:
    """A seeded sample of ANT articles from every shard, in corpus order."""
    articles = []
    for shard in sorted((data_root / ANT_DIR).glob("*.jsonl")):
        with shard.open(encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                articles.append(
                    {"id": record["id"], "text": f"{record['title']}\n{record['text']}"}
                )
    if len(articles) < count:
        raise SystemExit(f"{data_root / ANT_DIR} holds {len(articles)} articles, not {count}")
    chosen = sorted(random.Random(seed).sample(range(len(articles)), count))
    return [articles[index] for index in chosen]


def measure_local(path: Path, threads: int, out_dir: Path) -> dict[str, Any]:
    """``khabar predict`` in this process: model load, then every record."""
    started = time.perf_counter()
    predictor = load_predictor(DEFAULT_MODEL_DIR, threads)
    loaded = time.perf_counter()
    with (out_dir / "local.jsonl").open("w", encoding="utf-8") as out:
        summary = predict_records(read_inputs([str(path)]), predictor, out)
    done = time.perf_counter()
    return {
        "engine": "local",
        "threads": threads,
        "documents": summary.n_total,
        "failed": summary.n_failed,
        "load_s": round(loaded - started, 2),
        "analysis_s": round(done - loaded, 2),
        "wall_s": round(done - started, 2),
        "docs_per_s": round(summary.n_total / (done - started), 2),
        "analysis_docs_per_s": round(summary.n_total / (done - loaded), 2),
    }


def measure_ray(path: Path, actors: int, threads: int, out_dir: Path) -> dict[str, Any]:
    """One Ray engine job over ``path`` with ``actors`` x ``threads``."""
    settings = RaySettings(actors=actors, threads_per_actor=threads)
    files = resolve_inputs([str(path)])
    out = OutputDir.open(
        out_dir / f"ray-{actors}x{threads}", job_of(files, settings, "jsonl"), False
    )
    report = run(files, out, settings)
    documents = report.analysed.n_total
    batches = len(report.spans)
    busy_s = sum(end - begin for _, begin, end in report.spans)
    first_begin = min(begin for _, begin, _ in report.spans)
    startup_s = first_begin - report.started_at
    # Actor time from the first analysis to the job's end that went to no batch: the
    # hand-over between batches, the actors still starting, the tail and the last write.
    lost_s = actors * (report.elapsed_s - startup_s) - busy_s
    return {
        "engine": "ray",
        "actors": actors,
        "threads_per_actor": threads,
        "documents": documents,
        "failed": report.analysed.n_failed,
        "wall_s": round(report.elapsed_s, 2),
        "docs_per_s": round(documents / report.elapsed_s, 2),
        "analysis_docs_per_s": round(documents / (report.elapsed_s - startup_s), 2),
        "batches": batches,
        "documents_per_batch": round(documents / batches, 1),
        "actors_used": len({worker for worker, _, _ in report.spans}),
        "startup_s": round(startup_s, 2),
        "actor_busy_s": round(busy_s, 2),
        "per_actor_docs_per_s": round(documents / busy_s, 3),
        "lost_actor_s_per_batch": round(lost_s / batches, 3),
    }


def measure_reader(path: Path) -> dict[str, Any]:
    """One reading task's work in this process: read, count tokens, pack."""
    counter = TokenCounter(DEFAULT_MODEL_DIR, DocumentLimits())
    [file] = resolve_inputs([str(path)])
    started = time.perf_counter()
    documents = batches = 0
    for partition in read_partitions(file, FieldNames(), DocumentLimits()):
        packed = list(pack(partition, counter))
        documents += len(partition.items)
        batches += len(packed)
    elapsed = time.perf_counter() - started
    return {"documents": documents, "batches": batches, "docs_per_s": round(documents / elapsed, 1)}


def measure_writer(out_dir: Path) -> dict[str, Any]:
    """The driver's writing: the local engine's lines written again as partitions of 1,000."""
    lines = (out_dir / "local.jsonl").read_text(encoding="utf-8").splitlines()
    out = OutputDir.open(out_dir / "writer", {"format": "jsonl"}, False)
    started = time.perf_counter()
    for start in range(0, len(lines), 1000):
        out.write_partition(f"00000-{start // 1000:06d}", "x", lines[start : start + 1000], 0)
    elapsed = time.perf_counter() - started
    return {"documents": len(lines), "docs_per_s": round(len(lines) / elapsed, 1)}


def model_nodes(
    layout: Mapping[str, Any],
    reader: Mapping[str, Any],
    writer: Mapping[str, Any],
    cpus_per_node: int,
    nodes: Sequence[int] = NODE_COUNTS,
    documents: int = ARCHIVE_DOCUMENTS,
) -> list[dict[str, Any]]:
    """Documents per second and hours for ``documents`` on N nodes like this one.

    A document costs ``threads / r`` CPU-seconds in an actor (``r``: one actor's measured
    rate while busy, stretched by the actor time lost per batch) and ``1 / reader`` in a
    reading task; a node has ``cpus_per_node`` CPUs; the one writer caps the whole job.
    """
    threads = layout["threads_per_actor"]
    per_batch = layout["documents_per_batch"]
    actor_rate = per_batch / (
        per_batch / layout["per_actor_docs_per_s"] + layout["lost_actor_s_per_batch"]
    )
    cpu_s_per_doc = threads / actor_rate + 1 / reader["docs_per_s"]
    node_rate = cpus_per_node / cpu_s_per_doc
    rows = []
    for n in nodes:
        actors = n * (cpus_per_node // threads)
        readers = math.ceil(actors / ACTORS_PER_READER)
        ceilings = {
            "actors": n * node_rate,
            "readers": readers * reader["docs_per_s"],
            "writer": writer["docs_per_s"],
        }
        bound = min(ceilings, key=ceilings.__getitem__)
        rate = ceilings[bound]
        seconds = layout["startup_s"] + documents / rate
        rows.append(
            {
                "nodes": n,
                "actors": actors,
                "docs_per_s": round(rate, 1),
                "bound_by": bound,
                "hours_for_archive": round(seconds / 3600, 2),
            }
        )
    return rows


def render_markdown(results: Mapping[str, Any]) -> str:
    """The results as a Markdown report."""
    machine = results["machine"]
    lines = [
        f"# Ray engine scaling, {results['date']}, {machine['name']}",
        "",
        f"{machine['cpu_model']}, {machine['cpus_usable']} CPUs usable of {machine['cpus']}, "
        f"{machine['memory_gb']:.1f} GB; {machine['platform']}; Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        "",
        f"{results['articles']} ANT articles (seeded sample, seed {results['seed']}; median "
        f"{results['median_chars']} characters), the shipped model, one run "
        f"(`{results['command']}`). Local Ray started once in {results['ray_start_s']} s, "
        "not charged to the jobs.",
        "",
        "## Measured",
        "",
        "| engine | layout | docs/s (whole job) | docs/s (analysis) | wall s | startup s "
        "| vs local |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    local = results["local"]
    for row in [local, *results["ray"]]:
        layout = (
            f"{row['threads']} threads"
            if row["engine"] == "local"
            else f"{row['actors']} actor(s) x {row['threads_per_actor']} thread(s)"
        )
        startup = row.get("startup_s", row.get("load_s"))
        ratio = row["docs_per_s"] / local["docs_per_s"]
        lines.append(
            f"| {row['engine']} | {layout} | {row['docs_per_s']} | {row['analysis_docs_per_s']} "
            f"| {row['wall_s']} | {startup} | {ratio:.0%} |"
        )
    lines += [
        "",
        "Startup: the local model load; for Ray, from the call to the first analysis begun "
        "(the job planned, actors started with their models, the first file read and packed).",
        "",
        "| Ray layout | batches | docs/batch | one actor's docs/s while busy "
        "| actor s lost per batch |",
        "|---|--:|--:|--:|--:|",
    ]
    for row in results["ray"]:
        lines.append(
            f"| {row['actors']} x {row['threads_per_actor']} | {row['batches']} | "
            f"{row['documents_per_batch']} | {row['per_actor_docs_per_s']} | "
            f"{row['lost_actor_s_per_batch']} |"
        )
    lines += [
        "",
        f"One reading task (read, tokenise, pack): {results['reader']['docs_per_s']} docs/s. "
        "The writer (this process, partitions of 1,000): "
        f"{results['writer']['docs_per_s']} docs/s.",
        "",
        "## Model of N nodes (computed from the figures above, not measured)",
        "",
        f"Nodes like this one ({results['model']['cpus_per_node']} CPUs), layout "
        f"{results['model']['layout']}; a document costs threads / (one actor's rate, "
        "stretched by the time lost per batch) CPU-seconds plus one reading task's share; "
        f"one reading task per {ACTORS_PER_READER} actors; one writer for the job; hours for "
        f"{ARCHIVE_DOCUMENTS:,} articles include one job startup. Not modelled: network "
        "transfer (a batch is some hundreds of KB), object-store spilling, slower or uneven "
        "nodes, a shared filesystem's read rate.",
        "",
        "| nodes | actors | docs/s | bound by | hours for 10M articles |",
        "|--:|--:|--:|---|--:|",
    ]
    for row in results["model"]["nodes"]:
        lines.append(
            f"| {row['nodes']} | {row['actors']} | {row['docs_per_s']} | {row['bound_by']} | "
            f"{row['hours_for_archive']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, model, and write the JSON and Markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument(
        "--data", type=Path, default=None, help="data root (default: KHABAR_DATA, ../shared/data)"
    )
    parser.add_argument(
        "--name", default=None, help="machine name in the results (default: hostname)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--cpus", type=int, default=None, help="CPUs to use (default: those usable here)"
    )
    args = parser.parse_args(argv)
    ray = import_ray()
    cpus = args.cpus or machine_info()["cpus_usable"]
    articles = sample_articles(args.data or resolve_data_root(), args.articles)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        path = work / "articles.jsonl"
        path.write_text(
            "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles), encoding="utf-8"
        )
        local = measure_local(path, cpus, work)
        print(f"local: {local['docs_per_s']} docs/s", flush=True)
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray_start_s = round(time.perf_counter() - started, 2)
        layouts = [(1, cpus), (cpus, 1)] if cpus > 1 else [(1, 1)]
        measured = []
        for actors, threads in layouts:
            measured.append(measure_ray(path, actors, threads, work))
            print(f"ray {actors}x{threads}: {measured[-1]['docs_per_s']} docs/s", flush=True)
        ray.shutdown()
        reader = measure_reader(path)
        writer = measure_writer(work)
    best = max(measured, key=lambda row: row["docs_per_s"])
    results: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "command": f"python -m benchmarks.ray_scaling --articles {args.articles}"
        + (f" --cpus {args.cpus}" if args.cpus else ""),
        "machine": machine_info(args.name),
        "versions": {
            package: importlib.metadata.version(package)
            for package in ("ray", "onnxruntime", "pyarrow")
        },
        "articles": args.articles,
        "seed": SEED,
        "median_chars": int(statistics.median(len(a["text"]) for a in articles)),
        "ray_start_s": ray_start_s,
        "local": local,
        "ray": measured,
        "reader": reader,
        "writer": writer,
        "model": {
            "cpus_per_node": cpus,
            "layout": f"{best['actors']} x {best['threads_per_actor']}",
            "nodes": model_nodes(best, reader, writer, cpus),
        },
    }
    markdown = render_markdown(results)
    markdown_path, raw = write_results(results, args.out, markdown, "ray-scaling")
    print(markdown)
    print(f"wrote {markdown_path} and {raw}")


if __name__ == "__main__":
    main()

"""The Ray Data pipeline of ``khabar predict --engine ray`` and the command's report.

Three stages, streamed:

1. **Read** (Ray tasks, one per input file): the file's records, cut into partitions
   and packed into token-sized batches (:mod:`serving.ray_batch.inputs`); partitions
   already complete are dropped here, before any tokenising. Each batch is one row and
   one Ray Data block, so the actor pool is handed work a batch at a time.
2. **Analyse** (``map_batches`` on an actor pool): every actor loads the model once with
   ``threads_per_actor`` onnxruntime threads and runs the local engine's
   :func:`~serving.cli.records.predict_records` on each batch, so a record's output
   (result or ``{id, error}``) is the local engine's, byte for byte.
3. **Write** (this process): a partition is written when its last batch is back
   (:mod:`serving.ray_batch.output`).

A document's answer depends on its own text only (every encoder batch holds one
document's windows), so how records are packed, and on which actor they run, changes
nothing in the output.

Ray is imported when a run starts: without the ``ray`` extra, ``--engine ray`` fails
with one line naming it, and the local engine never needs it.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from serving.cli.readers import FieldNames
from serving.cli.records import predict_records
from serving.errors import KhabarError, MissingExtraError
from serving.limits import DocumentLimits
from serving.metadata import DEFAULT_MODEL_DIR, METADATA_NAME, sha256_of_file
from serving.predictor import DEFAULT_BATCH_SIZE, load_predictor
from serving.ray_batch.inputs import (
    BATCH_RECORDS,
    BATCH_TOKENS,
    PARTITION_RECORDS,
    InputFile,
    TokenCounter,
    items_of_row,
    pack,
    read_partitions,
)
from serving.ray_batch.output import Counts, OutputDir, PartitionAssembler

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'khabar[ray]'"
# Batches handed to one actor at a time, the one it runs included: one queued hides the
# hand-over, and no more keeps an idle actor from waiting while a busy one holds work.
TASKS_IN_FLIGHT_PER_ACTOR = 2
# Files read at once per this many actors: reading and counting tokens is some 2% of
# the analysis's work.
ACTORS_PER_READER = 8


class RayJobError(KhabarError):
    """The Ray cluster could not be reached, or the job failed on it."""

    exit_code = 1
    error_type = "ray_job_error"


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or one line saying what to install.

    Raises:
        MissingExtraError: Ray, Ray Data or pyarrow is not installed.
    """
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"--engine ray needs the ray extra ({exc.name} is not installed): {INSTALL_HINT}"
        ) from exc
    return ray


@dataclass(frozen=True)
class RaySettings:
    """How a run reads, packs and analyses.

    ``actors`` ``None`` is as many as the cluster's CPUs hold at ``threads_per_actor`` each.
    ``model_dir`` ``None`` is the model shipped in the package, which every node finds in
    its own installation; another directory must exist at the same path on every node,
    like ``stories``.
    """

    address: str | None = None
    actors: int | None = None
    threads_per_actor: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    model_dir: Path | None = None
    stories: tuple[Path, ...] = ()
    limits: DocumentLimits = field(default_factory=DocumentLimits)
    fields: FieldNames = field(default_factory=FieldNames)
    partition_records: int = PARTITION_RECORDS
    batch_tokens: int = BATCH_TOKENS
    batch_records: int = BATCH_RECORDS
    progress: bool = False


def job_of(files: Sequence[InputFile], settings: RaySettings, output_format: str) -> dict[str, Any]:
    """What decides the partitions' keys and contents: recorded in the manifest.

    The model is named by the sha256 of its ``khabar.json``, which records the sha256 of
    every model file.
    """
    model_dir = settings.model_dir or DEFAULT_MODEL_DIR
    return {
        "inputs": [file.name for file in files],
        "text_field": settings.fields.text,
        "id_field": settings.fields.id,
        "format": output_format,
        "partition_records": settings.partition_records,
        "model": sha256_of_file(model_dir / METADATA_NAME),
        "stories": [str(path) for path in settings.stories],
        "max_chars_per_document": settings.limits.max_chars,
        "max_tokens_per_document": settings.limits.max_tokens,
    }


@dataclass(frozen=True)
class RunReport:
    """What a run did, and where its time went.

    Attributes:
        analysed: Records and partitions this run wrote.
        skipped: Records and partitions already complete.
        started_at: When the call began (``time.time()``).
        elapsed_s: From the call to the last partition written.
        spans: Per batch analysed: the actor's process (node and pid), and when its
            analysis began and ended (``time.time()`` on the actor's node).
    """

    analysed: Counts
    skipped: Counts
    started_at: float
    elapsed_s: float
    spans: list[tuple[str, float, float]] = field(default_factory=list)


@functools.lru_cache(maxsize=2)
def _token_counter(model_dir: Path | None, limits: DocumentLimits) -> TokenCounter:
    """One token counter per worker process (Ray reuses workers across read tasks)."""
    return TokenCounter(model_dir or DEFAULT_MODEL_DIR, limits)


def read_file_batches(
    row: dict[str, Any], *, settings: RaySettings, skip: frozenset[str]
) -> Iterator[dict[str, Any]]:
    """Stage 1: one input file (a row of the file list) -> its batches, one row each."""
    file = InputFile(number=row["number"], name=row["name"], format=row["format"])
    count_tokens = _token_counter(settings.model_dir, settings.limits)
    for partition in read_partitions(
        file, settings.fields, settings.limits, settings.partition_records, skip
    ):
        for batch in pack(partition, count_tokens, settings.batch_tokens, settings.batch_records):
            yield batch.to_row()


class Analyser:
    """Stage 2: an actor holding one loaded predictor, analysing batches of records."""

    def __init__(self, settings: RaySettings) -> None:
        """Load the model and the story definitions once, with the actor's thread count."""
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.predictor = load_predictor(
            settings.model_dir or DEFAULT_MODEL_DIR, settings.threads_per_actor, settings.stories
        )

    def __call__(self, table: Any) -> dict[str, list[Any]]:
        """Output lines for each batch row; the columns the writer needs come along."""
        out: dict[str, list[Any]] = {
            "partition": [],
            "input": [],
            "partition_records": [],
            "indices": [],
            "lines": [],
            "failed": [],
            "worker": [],
            "began": [],
            "ended": [],
        }
        for row in table.to_pylist():
            began = time.time()
            stream = io.StringIO()
            summary = predict_records(
                items_of_row(row),
                self.predictor,
                stream,
                batch_size=self.settings.batch_size,
                chunk_size=len(row["indices"]),
                limits=self.settings.limits,
            )
            for name in ("partition", "input", "partition_records", "indices"):
                out[name].append(row[name])
            out["lines"].append(stream.getvalue().split("\n")[:-1])
            out["failed"].append(summary.n_failed)
            out["worker"].append(self.worker)
            out["began"].append(began)
            out["ended"].append(time.time())
        return out


def build_dataset(
    ray: Any, files: Sequence[InputFile], settings: RaySettings, skip: frozenset[str]
) -> Any:
    """The read -> analyse pipeline as a lazy Ray Dataset of output rows."""
    actors = settings.actors or 1
    readers = max(1, min(len(files), -(-actors // ACTORS_PER_READER)))
    files_ds = ray.data.from_items(
        [{"number": f.number, "name": f.name, "format": f.format} for f in files],
        override_num_blocks=len(files),
    )
    batches = files_ds.flat_map(
        read_file_batches,
        fn_kwargs={"settings": settings, "skip": skip},
        # Reading is light beside the analysis; the actors hold the CPUs.
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=readers),
    )
    return batches.map_batches(
        Analyser,
        fn_constructor_kwargs={"settings": settings},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            size=actors, max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT_PER_ACTOR
        ),
        num_cpus=settings.threads_per_actor,
    )


def run(files: Sequence[InputFile], out: OutputDir, settings: RaySettings) -> RunReport:
    """Analyse every partition of ``files`` not yet complete in ``out``, writing as they end.

    Raises:
        RayJobError: The cluster cannot be reached or the job failed there; partitions
            written before stay complete.
        KhabarError: A read task met a whole-file problem (e.g. a CSV not UTF-8).
    """
    ray = import_ray()
    skipped = out.counts()
    started_at = time.time()
    started = time.perf_counter()
    started_ray = _connect(ray, settings.address)
    if settings.actors is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        settings = replace(settings, actors=max(1, cpus // settings.threads_per_actor))
    context = ray.data.DataContext.get_current()
    saved = (context.target_max_block_size, context.enable_progress_bars)
    # One batch per block: the actor pool is handed work a batch at a time.
    context.target_max_block_size = 1
    context.enable_progress_bars = settings.progress
    assembler = PartitionAssembler(out)
    spans: list[tuple[str, float, float]] = []
    try:
        dataset = build_dataset(ray, files, settings, out.complete())
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in table.to_pylist():
                spans.append((row["worker"], row["began"], row["ended"]))
                assembler.add(
                    row["partition"],
                    row["input"],
                    row["partition_records"],
                    row["indices"],
                    row["lines"],
                    row["failed"],
                )
    except Exception as exc:
        cause = _khabar_cause(exc)
        if cause is not None:
            raise cause from exc
        raise RayJobError(f"the Ray job failed: {_first_line(exc)}") from exc
    finally:
        context.target_max_block_size, context.enable_progress_bars = saved
        if started_ray:
            ray.shutdown()
    if assembler.incomplete:
        raise RayJobError(f"partitions came back incomplete: {', '.join(assembler.incomplete[:5])}")
    return RunReport(
        analysed=assembler.counts(),
        skipped=skipped,
        started_at=started_at,
        elapsed_s=time.perf_counter() - started,
        spans=spans,
    )


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (or start a local Ray); whether this process started it."""
    if ray.is_initialized():
        return False
    # Ray's notices (token authentication, progress bars off, ...) are not the user's
    # business on a command line; its errors still show.
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayJobError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from exc
    return True


def _khabar_cause(exc: BaseException) -> KhabarError | None:
    """The khabar error a Ray task raised, found in the chain Ray wraps it in."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # Ray re-raises a task's error as a class deriving from it and from its own
        # RayTaskError, whose message is a traceback: only khabar's own classes will do.
        if isinstance(current, KhabarError) and type(current).__module__.startswith("serving."):
            return current
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""``khabar predict``: analyse files or stdin in batches and write JSON lines.

``predict_cli`` only checks options, loads the model and reports; the work is in
:func:`serving.cli.records.predict_records`, a plain function over records, a predictor
and a stream, which is what tests call (and what ``--engine ray`` runs per batch, from
:mod:`serving.ray_batch`). Output has one line per input document, in input order, and
is flushed after every chunk, so an interrupted run keeps everything it finished.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from serving.cli.readers import (
    DEFAULT_ID_FIELD,
    DEFAULT_TEXT_FIELD,
    STDIN,
    FieldNames,
    check_inputs,
    read_inputs,
)
from serving.cli.records import exit_if_any_failed, predict_records
from serving.limits import (
    DEFAULT_MAX_CHARS_PER_DOCUMENT,
    DEFAULT_MAX_TOKENS_PER_DOCUMENT,
    DocumentLimits,
)
from serving.metadata import DEFAULT_MODEL_DIR, MODEL_ENV
from serving.predictor import DEFAULT_BATCH_SIZE, load_predictor

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Task
    from rich.text import Text

    from serving.predictor import DocumentResult, Predictor

logger = logging.getLogger(__name__)

PREDICT_HELP = (
    "Tag named entities and topics in documents and write one JSON line per document. "
    "Reads .jsonl/.ndjson, .csv, .tsv, .txt, directories of .txt files and - (JSON lines "
    "on stdin). A bad record (or one over the per-document limits, the same as the API's) "
    "becomes an {id, error} line and the run goes on; the exit code is 1 if any record "
    "failed. Output closed early (| head) ends the run quietly with status 0."
)
INPUTS_HELP = "Files or directories to analyse, in order; - reads JSON lines from stdin."
OUTPUT_HELP = (
    "Write JSON lines to this file instead of stdout; with --engine ray, the directory "
    "to write partitions and their manifest to."
)
MODEL_HELP = "Exported model directory (default: the model shipped inside the package)."
BATCH_SIZE_HELP = (
    "Windows of one document per encoder call (default 1: each window's answer depends on "
    "its own text only; more is a little faster on long articles)."
)
THREADS_HELP = "onnxruntime intra-op threads (default: CPUs available, up to 8)."
TEXT_FIELD_HELP = "JSON key or CSV/TSV column holding the text."
ID_FIELD_HELP = "JSON key or CSV/TSV column holding the id (default id: FILE:LINE)."
TEXT_HELP = "Analyse this text and print readable tables (entity groups first) instead of JSON."
QUIET_HELP = "No progress bar and no summary unless records failed."
MAX_CHARS_HELP = "Longest document, in characters; a longer one is an error line."
MAX_TOKENS_HELP = "Most sub-word tokens per document; more is an error line."
MAX_CHARS_ENV = "KHABAR_MAX_CHARS_PER_DOCUMENT"
MAX_TOKENS_ENV = "KHABAR_MAX_TOKENS_PER_DOCUMENT"
STORIES_HELP = (
    "A story definition file or a directory of them (*.yaml), scored beside the shipped "
    "stories without retraining (repeatable); a file named like a shipped story replaces it."
)
ENGINE_HELP = (
    "local: this process. ray: a Ray cluster (Ray Data over an actor pool; needs "
    "pip install 'khabar[ray]'); reads .jsonl, .csv, .tsv, .parquet or directories or "
    "globs of them and writes partitions to the -o directory."
)
ADDRESS_HELP = "Ray cluster to join (auto, ray://HOST:PORT); default: RAY_ADDRESS or a local Ray."
FORMAT_HELP = "Format of the partitions --engine ray writes."
ACTORS_HELP = "Actors of the Ray engine, each holding the model once."
THREADS_PER_ACTOR_HELP = "onnxruntime threads (and CPUs reserved) per Ray actor."
RESUME_HELP = "Ray engine: keep the partitions the -o directory holds complete; analyse the rest."


class Engine(StrEnum):
    """Where ``khabar predict`` runs."""

    local = "local"
    ray = "ray"


class OutputFormat(StrEnum):
    """What the Ray engine writes its partitions as."""

    jsonl = "jsonl"
    parquet = "parquet"


def predict_cli(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help=INPUTS_HELP, metavar="INPUT", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help=OUTPUT_HELP, metavar="OUT"),
    ] = None,
    model: Annotated[
        Path, typer.Option("--model", help=MODEL_HELP, envvar=MODEL_ENV, metavar="DIR")
    ] = DEFAULT_MODEL_DIR,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help=BATCH_SIZE_HELP, min=1, metavar="N")
    ] = DEFAULT_BATCH_SIZE,
    threads: Annotated[
        int | None, typer.Option("--threads", help=THREADS_HELP, min=1, metavar="N")
    ] = None,
    text_field: Annotated[
        str, typer.Option("--text-field", help=TEXT_FIELD_HELP)
    ] = DEFAULT_TEXT_FIELD,
    id_field: Annotated[str, typer.Option("--id-field", help=ID_FIELD_HELP)] = DEFAULT_ID_FIELD,
    text: Annotated[str | None, typer.Option("--text", help=TEXT_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    max_chars_per_document: Annotated[
        int,
        typer.Option(help=MAX_CHARS_HELP, min=1, metavar="N", envvar=MAX_CHARS_ENV),
    ] = DEFAULT_MAX_CHARS_PER_DOCUMENT,
    max_tokens_per_document: Annotated[
        int,
        typer.Option(help=MAX_TOKENS_HELP, min=1, metavar="N", envvar=MAX_TOKENS_ENV),
    ] = DEFAULT_MAX_TOKENS_PER_DOCUMENT,
    stories: Annotated[
        list[Path] | None, typer.Option("--stories", help=STORIES_HELP, metavar="DIR")
    ] = None,
    engine: Annotated[Engine, typer.Option("--engine", help=ENGINE_HELP)] = Engine.local,
    address: Annotated[str | None, typer.Option("--address", help=ADDRESS_HELP)] = None,
    output_format: Annotated[
        OutputFormat | None, typer.Option("--format", help=FORMAT_HELP)
    ] = None,
    actors: Annotated[
        int | None, typer.Option("--actors", help=ACTORS_HELP, min=1, metavar="N")
    ] = None,
    threads_per_actor: Annotated[
        int | None,
        typer.Option("--threads-per-actor", help=THREADS_PER_ACTOR_HELP, min=1, metavar="T"),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help=RESUME_HELP)] = False,
) -> None:
    """Check options, load the model, run :func:`predict_records` and report."""
    inputs = inputs or []
    limits = DocumentLimits(max_chars=max_chars_per_document, max_tokens=max_tokens_per_document)
    ray_only = {
        "--address": address,
        "--format": output_format,
        "--actors": actors,
        "--threads-per-actor": threads_per_actor,
        "--resume": resume or None,
    }
    if engine is Engine.ray:
        from serving.ray_batch.command import predict_on_ray

        predict_on_ray(
            inputs,
            output,
            {"--text": text, "--threads": threads},
            model=model,
            stories=stories or (),
            fields=FieldNames(text=text_field, id=id_field),
            limits=limits,
            batch_size=batch_size,
            address=address,
            output_format=(output_format or OutputFormat.jsonl).value,
            actors=actors,
            threads_per_actor=threads_per_actor or 1,
            resume=resume,
            quiet=quiet,
        )
        return
    given = [name for name, value in ray_only.items() if value is not None]
    if given:
        raise typer.BadParameter("only --engine ray takes this option", param_hint=given[0])
    if text is not None:
        if inputs or output is not None:
            raise typer.BadParameter(
                "--text prints a table; it takes no INPUT and no --output", param_hint="--text"
            )
        if not text.strip():
            raise typer.BadParameter("the text is empty", param_hint="--text")
        limits.check_characters(text)
        predictor = load_predictor(model, threads, stories or ())
        prepared = predictor.prepare([text])
        limits.check_tokens(prepared[0])
        result = predictor.analyze_prepared(prepared, ["text"], batch_size)[0]
        _print_tables(result, predictor, _stdout_console())
        return
    if not inputs:
        raise typer.BadParameter(
            "give one or more INPUT files, - for stdin, or --text TEXT", param_hint="INPUT"
        )
    fields = FieldNames(text=text_field, id=id_field)
    check_inputs(inputs, fields)
    if output is not None:
        _check_output(output, inputs)
    predictor = load_predictor(model, threads, stories or ())

    show_progress = not quiet and sys.stderr.isatty() and (output is not None or not _stdout_tty())
    started = time.perf_counter()
    try:
        with _open_output(output) as out, _progress_bar(show_progress) as progress:
            summary = predict_records(
                read_inputs(inputs, fields, max_chars=limits.max_chars),
                predictor,
                out,
                batch_size=batch_size,
                progress=progress,
                limits=limits,
            )
    except BrokenPipeError:
        # The reader of stdout is gone (`| head`): nothing more can be delivered, and
        # that is what the user asked for. End quietly and successfully.
        _silence_stdout()
        raise typer.Exit(code=0) from None
    elapsed = time.perf_counter() - started
    exit_if_any_failed(summary.n_failed, summary.n_total, "their lines")
    if not quiet:
        rate = summary.n_total / elapsed if elapsed > 0 else 0.0
        typer.echo(
            f"analysed {summary.n_total} documents in {elapsed:.1f} s ({rate:.1f} documents/s)",
            err=True,
        )


def _check_output(output: Path, inputs: Sequence[str]) -> None:
    """Refuse an output that would overwrite an input or cannot be created."""
    resolved = output.resolve()
    for name in inputs:
        if name != STDIN and Path(name).resolve() == resolved:
            raise typer.BadParameter(f"{output} is also an input", param_hint="--output")
    if not resolved.parent.is_dir():
        raise typer.BadParameter(f"directory {output.parent} does not exist", param_hint="--output")


def _stdout_tty() -> bool:
    return sys.stdout.isatty()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (a test's stream)
        pass


@contextmanager
def _open_output(output: Path | None) -> Iterator[TextIO]:
    """The output file, or stdout switched to UTF-8 whatever the locale says."""
    if output is None:
        stdout = sys.stdout
        encoding = (getattr(stdout, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stdout, "reconfigure"):
            stdout.reconfigure(encoding="utf-8")
        yield stdout
        return
    try:
        stream = output.open("w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {output}: {exc.strerror or exc}", param_hint="--output"
        ) from exc
    with stream:
        yield stream


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress line on stderr with documents/s, or nothing when not wanted."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TimeElapsedColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Documents per second; rich's own speed column counts bytes."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} documents/s" if speed else "", style="progress.data.speed")

    columns = (SpinnerColumn(), "{task.completed} documents", RateColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("analysing", total=None)
        yield lambda n: bar.advance(task, n)


def _stdout_console() -> Console:
    from rich.console import Console

    return Console()


def _print_tables(result: DocumentResult, predictor: Predictor, console: Console) -> None:
    """Entity groups, entities and topic scores of one document as readable tables."""
    from rich.table import Table

    metadata = predictor.metadata

    def label_of(label: str) -> str:
        name = metadata.entity_display_names.get(label)
        return f"{label} ({name})" if name else label

    if metadata.entity_types and result.entity_groups:
        groups = Table(title="Entity groups (most salient first)", title_justify="left")
        for column in ("name", "label", "mentions", "salience", "as written"):
            groups.add_column(
                column, justify="right" if column in ("mentions", "salience") else "left"
            )
        for group in result.entity_groups:
            written = dict.fromkeys(result.entities[i].text for i in group.mentions)
            groups.add_row(
                group.name,
                label_of(group.label),
                str(group.count),
                f"{group.salience:.3f}",
                "، ".join(written),
            )
        console.print(groups)

    entities = Table(title="Entities", title_justify="left")
    for column in ("text", "name", "label", "span", "score"):
        entities.add_column(column, justify="right" if column == "score" else "left")
    for entity in result.entities:
        entities.add_row(
            entity.text,
            entity.name,
            label_of(entity.label),
            f"{entity.start}-{entity.end}",
            f"{entity.score:.3f}",
        )
    if metadata.entity_types:
        console.print(entities if result.entities else "[dim]no entities found[/dim]")

    if not result.topic_scores:
        return
    selected = {label for label, _ in result.topics}
    topics = Table(title="Topics (* over its threshold)", title_justify="left")
    for column in ("", "label", "name", "score"):
        topics.add_column(column, justify="right" if column == "score" else "left")
    for label, score in sorted(result.topic_scores.items(), key=lambda kv: -kv[1]):
        topics.add_row(
            "*" if label in selected else "",
            label,
            predictor.topic_display_name(label),
            f"{score:.3f}",
            style="bold" if label in selected else None,
        )
    console.print(topics)

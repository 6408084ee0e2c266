"""``khabar predict --engine ray``: check everything, run the pipeline, report like local.

Everything that can be checked before Ray starts is: the inputs (every file, its format
and its text column), the model's metadata, the story definitions and the output
directory. The report follows the local engine's rules: any failed record makes exit
status 1 with a line counting them (over every partition in the directory, those of
earlier runs too, since they are all there); otherwise one line with the rate unless
``quiet``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import typer

from serving.cli.readers import FieldNames
from serving.cli.records import exit_if_any_failed
from serving.limits import DocumentLimits
from serving.metadata import DEFAULT_MODEL_DIR, ModelMetadata
from serving.ray_batch.engine import RaySettings, import_ray, job_of, run
from serving.ray_batch.inputs import resolve_inputs
from serving.ray_batch.output import OutputDir


def predict_on_ray(
    inputs: Sequence[str],
    output: Path | None,
    local_only: Mapping[str, object],
    *,
    model: Path,
    stories: Sequence[Path],
    fields: FieldNames,
    limits: DocumentLimits,
    batch_size: int,
    address: str | None,
    output_format: str,
    actors: int | None,
    threads_per_actor: int,
    resume: bool,
    quiet: bool,
) -> None:
    """Run the Ray engine over ``inputs`` into the directory ``output`` and report.

    Args:
        inputs: Files, directories or globs, as given.
        output: The output directory (required).
        local_only: Options of the local engine only, by flag; any given is refused.
        model: Model directory; the packaged one is found by every node in its own
            installation, another must exist at this path on every node.
        stories: Story definition files or directories (at these paths on every node).
        fields: Text and id fields.
        limits: Per-document limits.
        batch_size: Windows per encoder call.
        address: Ray cluster address, or ``None`` for ``RAY_ADDRESS`` or a local Ray.
        output_format: ``jsonl`` or ``parquet``.
        actors: Actors in the pool; ``None``: the cluster's CPUs / ``threads_per_actor``.
        threads_per_actor: onnxruntime threads and CPUs per actor.
        resume: Keep the complete partitions of an earlier run in ``output``.
        quiet: No summary line unless records failed.

    Raises:
        typer.BadParameter: A local-only option, no input, or no ``-o``.
        typer.Exit: Code 1 when any record in the directory failed.
        KhabarError: Bad inputs, model, stories or output directory; Ray missing; the job
            failed (partitions written before stay complete).
    """
    for flag, value in local_only.items():
        if value is not None:
            raise typer.BadParameter("--engine ray does not take this option", param_hint=flag)
    if not inputs:
        raise typer.BadParameter(
            "give one or more INPUT files, directories or globs", param_hint="INPUT"
        )
    if output is None:
        raise typer.BadParameter(
            "--engine ray writes a directory: pass -o OUT_DIR", param_hint="--output"
        )
    import_ray()
    settings = RaySettings(
        address=address,
        actors=actors,
        threads_per_actor=threads_per_actor,
        batch_size=batch_size,
        model_dir=None if model == DEFAULT_MODEL_DIR else model.resolve(),
        stories=tuple(path.resolve() for path in stories),
        limits=limits,
        fields=fields,
        progress=not quiet and sys.stderr.isatty(),
    )
    files = resolve_inputs(inputs, fields)
    ModelMetadata.load(settings.model_dir or DEFAULT_MODEL_DIR)
    if settings.stories:
        from serving.stories.schema import load_definitions

        load_definitions(*settings.stories)
    out = OutputDir.open(output, job_of(files, settings, output_format), resume)
    report = run(files, out, settings)
    counts = out.counts()
    exit_if_any_failed(counts.n_failed, counts.n_total, f"their records in {output}")
    if not quiet:
        done = report.analysed.n_total
        rate = done / report.elapsed_s if report.elapsed_s > 0 else 0.0
        resumed = (
            f"; {report.skipped.n_total} documents in {report.skipped.n_partitions} partitions "
            "were complete already"
            if report.skipped.n_partitions
            else ""
        )
        typer.echo(
            f"analysed {done} documents in {report.elapsed_s:.1f} s ({rate:.1f} documents/s) "
            f"into {counts.n_partitions} partitions in {output}{resumed}",
            err=True,
        )

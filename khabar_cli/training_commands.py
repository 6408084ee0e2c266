"""The training-side verbs of ``khabar``: train, export, refit, evaluate, ship, data check.

They live on the one ``khabar`` command but import torch and transformers only
when run, so the runtime works with just the ``serve`` extra installed; ``ship``
and ``data check`` need no torch at all.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from serving.errors import DataError, MissingExtraError
from serving.metadata import DEFAULT_MODEL_DIR, MODEL_ENV

TRAIN_HELP = "Fine-tune an encoder on the recipe's corpora and save a training run."
EXPORT_HELP = "Export a training run to an ONNX model directory (trim, optimise, int8, parity)."
EVALUATE_HELP = "Evaluate an exported model on the dev or test split through the ONNX runtime."
REFIT_HELP = (
    "Refit a run's topic head on frozen encoder features of every topic training article "
    "(kept only if the dev split improves)."
)
REFIT_SECTIONS_HELP = (
    "Refit the section columns of an exported model's topic head on the windows serving reads "
    "(every ONNX file in place; dev picks the pass, thresholds re-tuned). Run after export "
    "when the recipe reads whole-sentence windows."
)
SHIP_HELP = (
    "Copy a model directory with only its default (int8) ONNX file, e.g. into models/default; "
    "records the sha256 of every file. Needs no torch."
)
DATA_HELP = "The corpora the recipes train on."
DATA_CHECK_HELP = (
    "List each corpus file the recipe needs under the data root: found or missing, its "
    "expected sha256 (recorded by the shipped model), licence and public source. "
    "Exits 2 unless every file is there and matches."
)
OVERRIDE_HELP = "Override a config value, e.g. --set training.epochs=2 (repeatable)."
DATA_ROOT_HELP = (
    "Data root the recipe's corpus paths are relative to (else $KHABAR_DATA, the recipe's "
    "data_root, or ../shared/data beside the repository)."
)
FORCE_HELP = "Replace --output even if it holds files."

# Options several commands share, declared once.
DataRootOption = Annotated[Path | None, typer.Option("--data", help=DATA_ROOT_HELP)]
ThreadsOption = Annotated[int | None, typer.Option(help="onnxruntime threads.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q")]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install is as good as a missing one
        return False


def _require_training_extra() -> None:
    missing = [
        name for name in ("torch", "transformers", "seqeval", "onnx") if not _importable(name)
    ]
    if missing:
        raise MissingExtraError(
            f"this command needs {', '.join(missing)}: install them with pip install -e '.[train]'"
        )


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _print_report(report: dict[str, Any]) -> None:
    """Print a report as JSON, without its per-pass ``history`` (kept in ``khabar.json``)."""
    summary = {k: v for k, v in report.items() if k != "history"}
    typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))


def register(app: typer.Typer) -> None:
    """Add the training-side commands to ``app``; they import torch only when run."""

    @app.command("train", help=TRAIN_HELP)
    def train_cli(
        config: Annotated[Path, typer.Argument(help="Recipe YAML (configs/default.yaml).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Run directory.")] = Path(
            "runs/default"
        ),
        overrides: Annotated[list[str] | None, typer.Option("--set", help=OVERRIDE_HELP)] = None,
        data: DataRootOption = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        _require_training_extra()
        _setup_logging(quiet)
        from training.workflows import run_train

        run_dir = run_train(config, output, overrides or [], progress=not quiet, data_root=data)
        typer.echo(f"training run saved to {run_dir}")

    @app.command("export", help=EXPORT_HELP)
    def export_cli(
        run_dir: Annotated[Path, typer.Argument(help="A directory written by khabar train.")],
        output: Annotated[
            Path,
            typer.Option(
                "--output", "-o", help="Model directory to write (required).", show_default=False
            ),
        ],
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
        overrides: Annotated[list[str] | None, typer.Option("--set", help=OVERRIDE_HELP)] = None,
        data: DataRootOption = None,
        threads: ThreadsOption = None,
        quiet: QuietOption = False,
    ) -> None:
        _require_training_extra()
        _setup_logging(quiet)
        from training.workflows import run_export

        metadata = run_export(
            run_dir, output, overrides or [], threads=threads, data_root=data, force=force
        )
        _print_report(
            {"model": str(output), "files": metadata.onnx_files, "metrics": metadata.metrics}
        )

    @app.command("refit-topics", help=REFIT_HELP)
    def refit_cli(
        run_dir: Annotated[Path, typer.Argument(help="A directory written by khabar train.")],
        epochs: Annotated[int, typer.Option(help="Passes over the features.")] = 40,
        layers: Annotated[
            str,
            typer.Option(
                help="Encoder layers to try for the topic head, comma-separated "
                "('last' or an index); the best on dev is kept."
            ),
        ] = "last",
        data: DataRootOption = None,
        quiet: QuietOption = False,
    ) -> None:
        _require_training_extra()
        _setup_logging(quiet)
        from training.refit import refit_topic_head

        try:
            candidates = [
                None if item.strip() == "last" else int(item) for item in layers.split(",")
            ]
        except ValueError:
            raise typer.BadParameter(f"not a list of layers: {layers!r}") from None
        report = refit_topic_head(
            run_dir,
            epochs=epochs,
            layers=candidates,
            show_progress=not quiet,
            data_root=data,
        )
        _print_report(report)

    @app.command("refit-sections", help=REFIT_SECTIONS_HELP)
    def refit_sections_cli(
        model_dir: Annotated[Path, typer.Argument(help="An exported model directory.")],
        config: Annotated[Path, typer.Option(help="Recipe.")] = Path("configs/default.yaml"),
        features_cache: Annotated[
            Path | None,
            typer.Option(help="Keep serving features here, to refit again without the encoder."),
        ] = None,
        data: DataRootOption = None,
        threads: ThreadsOption = None,
        quiet: QuietOption = False,
    ) -> None:
        _require_training_extra()
        _setup_logging(quiet)
        from training.section_head import refit_section_head

        report = refit_section_head(
            model_dir,
            config,
            data,
            threads,
            show_progress=not quiet,
            features_cache=features_cache,
        )
        _print_report(report)

    @app.command("ship", help=SHIP_HELP)
    def ship_cli(
        source: Annotated[Path, typer.Argument(help="An exported model directory.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Target directory.")] = Path(
            "models/default"
        ),
        data: DataRootOption = None,
    ) -> None:
        from training.ship import run_ship

        metadata = run_ship(source, output, data_root=data)
        typer.echo(f"shipped {metadata.onnx_files} to {output}")

    @app.command("evaluate", help=EVALUATE_HELP)
    def evaluate_cli(
        model_dir: Annotated[Path, typer.Argument(help="An exported model directory.")],
        config: Annotated[
            Path | None, typer.Option(help="Recipe (default: the one stored with the model).")
        ] = None,
        split: Annotated[str, typer.Option(help="dev or test.")] = "test",
        variant: Annotated[str | None, typer.Option(help="int8 or fp32.")] = None,
        record: Annotated[
            bool, typer.Option(help="Store the figures in khabar.json and MODEL_CARD.md.")
        ] = False,
        baseline: Annotated[
            bool, typer.Option(help="Also score a TF-IDF + linear SVM topic baseline.")
        ] = False,
        overrides: Annotated[list[str] | None, typer.Option("--set", help=OVERRIDE_HELP)] = None,
        data: DataRootOption = None,
        threads: ThreadsOption = None,
        quiet: QuietOption = False,
    ) -> None:
        _require_training_extra()
        _setup_logging(quiet)
        from training.workflows import run_evaluate

        report = run_evaluate(
            model_dir, config, overrides or [], split, variant, record, baseline, threads, data
        )
        _print_report(report)

    data_app = typer.Typer(help=DATA_HELP, no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("check", help=DATA_CHECK_HELP)
    def data_check_cli(
        data: DataRootOption = None,
        config: Annotated[
            Path | None,
            typer.Option(
                help="Recipe (default: configs/default.yaml in a checkout, else the shipped "
                "model's recorded recipe)."
            ),
        ] = None,
        model: Annotated[
            Path,
            typer.Option(
                "--model",
                help="Model whose recorded data sha256s are expected.",
                envvar=MODEL_ENV,
                metavar="DIR",
            ),
        ] = DEFAULT_MODEL_DIR,
    ) -> None:
        from training.workflows import run_data_check

        report, complete = run_data_check(config, model, data)
        typer.echo(report)
        if not complete:
            raise DataError(
                "some corpus files are missing or differ from the recorded ones (see above)"
            )

"""The ``khabar`` command: ``predict``, ``serve`` and the training-side commands.

``main()`` is the console script. It is the one place where errors become what a
user sees: a :class:`~serving.errors.KhabarError` is one ``error: ...`` line on
stderr and its ``exit_code``; Ctrl-C is one line and exit 130; usage errors keep
click's own message and exit 2. No traceback reaches the user unless
``KHABAR_DEBUG=1`` asks for it.

>>> main(["predict", "news.jsonl", "-o", "out.jsonl"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from serving.cli import training_commands
from serving.cli.predict import (
    DEFAULT_MODEL_DIR,
    MODEL_ENV,
    MODEL_HELP,
    PREDICT_HELP,
    THREADS_HELP,
    load_predictor,
    predict_cli,
)
from serving.cli.stories import stories_app
from serving.errors import KhabarError, MissingExtraError

logger = logging.getLogger(__name__)

DEBUG_ENV = "KHABAR_DEBUG"
INTERRUPTED_EXIT_CODE = 130
UNEXPECTED_EXIT_CODE = 1

APP_HELP = "Arabic news analysis: named entities and topics with exact character spans."
SERVE_HELP = (
    "Serve the HTTP API (POST /v1/analyze, GET /v1/health, /v1/ready, /v1/model, /metrics; "
    "docs at /docs) and a page to try it at /. The model loads before the port opens, "
    "so a bad model fails here. "
    "Limits not given here come from KHABAR_* environment variables or their defaults."
)
HOST_HELP = "Interface to listen on; 0.0.0.0 for all."
PORT_HELP = "TCP port."
SERVE_BATCH_SIZE_HELP = "Windows per encoder call."
MAX_CHARS_HELP = "Longest document accepted, in characters (default 100000); longer -> 413."
MAX_DOCUMENTS_HELP = "Most documents per request (default 64); more -> 413."
MAX_BODY_HELP = "Largest request body in bytes (default 5 MB); larger -> 413."
MAX_QUEUED_HELP = "Requests queued or being analysed (default 64); more -> 429."
MAX_BATCH_DOCUMENTS_HELP = (
    "Documents from concurrent requests merged into one model call (default 32)."
)
MAX_WAIT_MS_HELP = (
    "Longest a request waits for others to join its model call, in ms (default 5; 0: no wait)."
)
LOG_LEVEL_HELP = "Log level of the server (debug, info, warning, error)."
STORIES_HELP = (
    "A story definition file or directory (*.yaml) scored beside the shipped stories "
    "(repeatable); a bad file fails here, before the port opens."
)

app = typer.Typer(
    name="khabar",
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("predict", help=PREDICT_HELP)(predict_cli)


@app.command("serve", help=SERVE_HELP)
def serve_cli(
    host: Annotated[str, typer.Option("--host", help=HOST_HELP)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help=PORT_HELP, min=0, max=65535)] = 8000,
    model: Annotated[
        Path, typer.Option("--model", help=MODEL_HELP, envvar=MODEL_ENV, metavar="DIR")
    ] = DEFAULT_MODEL_DIR,
    threads: Annotated[
        int | None, typer.Option("--threads", help=THREADS_HELP, min=1, metavar="N")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help=SERVE_BATCH_SIZE_HELP, min=1, metavar="N")
    ] = None,
    max_chars_per_document: Annotated[
        int | None, typer.Option(help=MAX_CHARS_HELP, min=1, metavar="N")
    ] = None,
    max_documents_per_request: Annotated[
        int | None, typer.Option(help=MAX_DOCUMENTS_HELP, min=1, metavar="N")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(help=MAX_BODY_HELP, min=1, metavar="BYTES")
    ] = None,
    max_queued_requests: Annotated[
        int | None, typer.Option(help=MAX_QUEUED_HELP, min=1, metavar="N")
    ] = None,
    max_batch_documents: Annotated[
        int | None, typer.Option(help=MAX_BATCH_DOCUMENTS_HELP, min=1, metavar="N")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help=MAX_WAIT_MS_HELP, min=0, max=1000, metavar="MS")
    ] = None,
    log_level: Annotated[str, typer.Option(help=LOG_LEVEL_HELP)] = "info",
    stories: Annotated[
        list[Path] | None, typer.Option("--stories", help=STORIES_HELP, metavar="DIR")
    ] = None,
) -> None:
    """Load the model, then run uvicorn on the app."""
    try:
        import uvicorn

        from serving.api.app import create_app
        from serving.api.settings import ServerSettings
    except ImportError as exc:
        raise MissingExtraError(
            f"`khabar serve` needs the serve extra ({exc.name} is not installed): "
            "pip install 'khabar[serve]'"
        ) from exc

    given = {
        "threads": threads,
        "batch_size": batch_size,
        "max_chars_per_document": max_chars_per_document,
        "max_documents_per_request": max_documents_per_request,
        "max_body_bytes": max_body_bytes,
        "max_queued_requests": max_queued_requests,
        "max_batch_documents": max_batch_documents,
        "max_wait_ms": max_wait_ms,
        "stories": stories,
    }
    settings = ServerSettings(
        model_dir=model, **{name: value for name, value in given.items() if value is not None}
    )
    logging.getLogger("serving").setLevel(log_level.upper())
    predictor = load_predictor(settings.model_dir, settings.threads, settings.stories)
    uvicorn.run(create_app(settings, predictor), host=host, port=port, log_level=log_level)


training_commands.register(app)
app.add_typer(stories_app, name="stories")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the ``khabar`` command and exit with its code.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=list(argv) if argv is not None else None, prog_name="khabar")
    except KhabarError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", INTERRUPTED_EXIT_CODE)
    except SystemExit as exc:
        # click turns Ctrl-C inside a command into a silent exit 130; say what happened.
        if exc.code == INTERRUPTED_EXIT_CODE:
            _fail("interrupted", INTERRUPTED_EXIT_CODE)
        raise
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        logger.debug("unexpected error", exc_info=True)
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 to see the traceback)",
            UNEXPECTED_EXIT_CODE,
        )
    sys.exit(0)


def _fail(message: str, code: int) -> NoReturn:
    """Print one ``error:`` line on stderr and exit with ``code``."""
    one_line = " ".join(message.split()) or "failed"
    typer.echo(f"error: {one_line}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()

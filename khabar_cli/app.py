"""The ``khabar`` command's root: ``predict``, ``serve``, ``stories`` and the training verbs.

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

from khabar_cli import training_commands
from khabar_cli.stories import stories_app
from serving.cli.predict import (
    DEFAULT_MODEL_DIR,
    MODEL_ENV,
    MODEL_HELP,
    PREDICT_HELP,
    THREADS_HELP,
    predict_cli,
)
from serving.errors import KhabarError, MissingExtraError
from serving.predictor import load_predictor

logger = logging.getLogger(__name__)

DEBUG_ENV = "KHABAR_DEBUG"
INTERRUPTED_EXIT_CODE = 130
UNEXPECTED_EXIT_CODE = 1

APP_HELP = "Arabic news analysis: named entities and topics with exact character spans."
SERVE_HELP = (
    "Serve the HTTP API (POST /v1/analyze, GET /v1/health, /v1/ready, /v1/model, /metrics; "
    "docs at /docs) and a page to try it at /. The model loads before the port opens, "
    "so a bad model fails here. "
    "Every option not given here comes from its KHABAR_* environment variable (the option's "
    "name in capitals, e.g. KHABAR_MAX_TOKENS_PER_DOCUMENT) or its default. On SIGTERM the "
    "server stops accepting, /v1/ready answers 503, admitted requests get the grace period, "
    "what is left gets 503 and the process exits within the grace period + 5 s."
)
HOST_HELP = "Interface to listen on; 0.0.0.0 for all."
PORT_HELP = "TCP port."
SERVE_BATCH_SIZE_HELP = "Windows per encoder call (each call holds one document's windows)."
MAX_CHARS_HELP = "Longest document accepted, in characters (default 100000); longer -> 413."
MAX_TOKENS_HELP = "Most sub-word tokens per document (default 40000); more -> 413."
MAX_DOCUMENTS_HELP = "Most documents per request (default 64); more -> 413."
MAX_REQUEST_TOKENS_HELP = "Most sub-word tokens per request (default 131072); more -> 413."
MAX_BODY_HELP = "Largest request body in bytes (default 5 MB); larger -> 413."
MAX_QUEUED_HELP = "Requests admitted at once (default 64); more -> 429."
REQUEST_TIMEOUT_HELP = "Longest a request may take once read (default 60 s); then 503."
BODY_TIMEOUT_HELP = "Longest a request body may take to arrive (default 30 s); then 408."
HEADER_TIMEOUT_HELP = "Longest request headers may take to arrive (default 10 s); then closed."
KEEP_ALIVE_HELP = "How long an idle keep-alive connection stays open (default 5 s)."
MAX_CONNECTIONS_HELP = "Open connections at most (default 256); beyond, requests get 503."
GRACE_HELP = "After SIGTERM, seconds admitted requests may still run (default 25)."
DOCS_HELP = "Serve Swagger UI at /docs from local files (default on)."
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
    max_tokens_per_document: Annotated[
        int | None, typer.Option(help=MAX_TOKENS_HELP, min=1, metavar="N")
    ] = None,
    max_documents_per_request: Annotated[
        int | None, typer.Option(help=MAX_DOCUMENTS_HELP, min=1, metavar="N")
    ] = None,
    max_tokens_per_request: Annotated[
        int | None, typer.Option(help=MAX_REQUEST_TOKENS_HELP, min=1, metavar="N")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(help=MAX_BODY_HELP, min=1, metavar="BYTES")
    ] = None,
    max_queued_requests: Annotated[
        int | None, typer.Option(help=MAX_QUEUED_HELP, min=1, metavar="N")
    ] = None,
    request_timeout_s: Annotated[
        float | None, typer.Option(help=REQUEST_TIMEOUT_HELP, min=0.001, metavar="S")
    ] = None,
    body_timeout_s: Annotated[
        float | None, typer.Option(help=BODY_TIMEOUT_HELP, min=0.001, metavar="S")
    ] = None,
    header_timeout_s: Annotated[
        float | None, typer.Option(help=HEADER_TIMEOUT_HELP, min=0.001, metavar="S")
    ] = None,
    keep_alive_s: Annotated[
        float | None, typer.Option(help=KEEP_ALIVE_HELP, min=0.001, metavar="S")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(help=MAX_CONNECTIONS_HELP, min=1, metavar="N")
    ] = None,
    shutdown_grace_s: Annotated[
        float | None, typer.Option(help=GRACE_HELP, min=0, metavar="S")
    ] = None,
    docs: Annotated[bool | None, typer.Option("--docs/--no-docs", help=DOCS_HELP)] = None,
    log_level: Annotated[str, typer.Option(help=LOG_LEVEL_HELP)] = "info",
    stories: Annotated[
        list[Path] | None, typer.Option("--stories", help=STORIES_HELP, metavar="DIR")
    ] = None,
) -> None:
    """Load the model, then serve the app until a stop signal."""
    try:
        from serving.api.app import create_app
        from serving.api.server import run_server
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
        "max_tokens_per_document": max_tokens_per_document,
        "max_documents_per_request": max_documents_per_request,
        "max_tokens_per_request": max_tokens_per_request,
        "max_body_bytes": max_body_bytes,
        "max_queued_requests": max_queued_requests,
        "request_timeout_s": request_timeout_s,
        "body_timeout_s": body_timeout_s,
        "header_timeout_s": header_timeout_s,
        "keep_alive_s": keep_alive_s,
        "max_connections": max_connections,
        "shutdown_grace_s": shutdown_grace_s,
        "docs": docs,
        "stories": stories,
    }
    settings = ServerSettings(
        model_dir=model, **{name: value for name, value in given.items() if value is not None}
    )
    logging.getLogger("serving").setLevel(log_level.upper())
    predictor = load_predictor(settings.model_dir, settings.threads, settings.stories)
    run_server(create_app(settings, predictor), settings, host, port, log_level)


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

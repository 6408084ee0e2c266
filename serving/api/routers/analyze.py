"""``POST /v1/analyze``: entities and topics for one text or a list of documents.

A request is checked in the order of what each check costs: documents and characters
first (free), then tokens once tokenised (in a thread, off the event loop), and only
then does it reach the encoder, through the app's
:class:`~serving.api.runner.InferenceRunner`, which takes turns between requests.

While a request waits, its connection is watched: if the client goes away, its
remaining encoder calls are dropped and it is counted as 499; if the request is not
done within ``request_timeout_s``, its work is dropped too and the answer is 503 with
``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from starlette.types import Receive

from serving.api.dependencies import get_metrics, get_predictor, get_runner, get_settings
from serving.api.metrics import Metrics
from serving.api.runner import InferenceRunner
from serving.api.settings import ServerSettings
from serving.errors import ClientDisconnected, DeadlineExceeded, LimitExceeded
from serving.limits import check_request_tokens, document_name
from serving.predictor import DocumentResult, Predictor
from serving.schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    DocumentIn,
    DocumentResultOut,
    error_responses,
)

router = APIRouter()

T = TypeVar("T")

DESCRIPTION = """Send either `{"text": "..."}` or `{"documents": [{"id": "...", "text": "..."}]}`,
never both.

A `text` request answers `{"result": {...}}`; a `documents` request answers
`{"results": [...]}` in the order sent. Entity offsets are half-open `[start, end)`
character positions into the text as sent (`text[start:end] == entity.text`).
A document's answer depends on its own text only, never on what else is analysed
at the same time.

Limits (server settings, shown in the schema where it can say them): characters per
document, documents per request, body bytes, and sub-word tokens per document and per
request (text without spaces takes about one token per character); over any of them
the answer is 413 with the numbers in the message. When too many requests are already
admitted the answer is 429 with `Retry-After`; a request not done within the server's
deadline, or still unanswered when the server shuts down, gets 503 with `Retry-After`."""


@router.post(
    "/analyze",
    summary="Tag entities and topics",
    description=DESCRIPTION,
    response_model=AnalyzeResponse,
    # Only the one of result/results that was set goes out; nested nulls (id) stay.
    response_model_exclude_unset=True,
    responses=error_responses(408, 413, 422, 424, 429, 500, 503),
)
async def analyze(
    body: AnalyzeRequest,
    request: Request,
    predictor: Annotated[Predictor, Depends(get_predictor)],
    runner: Annotated[InferenceRunner, Depends(get_runner)],
    settings: Annotated[ServerSettings, Depends(get_settings)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
) -> AnalyzeResponse:
    """Check limits, tokenise, wait for the encoder in turn, decode; count what was done."""
    documents = body.to_documents()
    check_limits(documents, settings)
    with runner.slot():
        results = await while_connected(
            request.receive,
            settings.request_timeout_s,
            lambda: _analyze(documents, predictor, runner, settings),
        )
    metrics.documents.inc(len(results))
    metrics.tokens.inc(sum(result.n_tokens for result in results))
    outputs = [DocumentResultOut.model_validate(result.to_dict()) for result in results]
    if body.text is not None:
        return AnalyzeResponse(result=outputs[0])
    return AnalyzeResponse(results=outputs)


async def _analyze(
    documents: Sequence[DocumentIn],
    predictor: Predictor,
    runner: InferenceRunner,
    settings: ServerSettings,
) -> list[DocumentResult]:
    texts = [d.text for d in documents]
    prepared = await anyio.to_thread.run_sync(predictor.prepare, texts, abandon_on_cancel=True)
    limits = settings.document_limits
    for position, (document, item) in enumerate(zip(documents, prepared, strict=True)):
        limits.check_tokens(item, document_name(position, document.id, len(documents) == 1))
    check_request_tokens(prepared, settings.max_tokens_per_request)
    analysis = predictor.analysis(prepared, [d.id for d in documents], settings.batch_size)
    await runner.run(analysis)
    return await anyio.to_thread.run_sync(analysis.results, abandon_on_cancel=True)


async def while_connected(
    receive: Receive, timeout_s: float, work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` while the client stays connected, for at most ``timeout_s`` seconds.

    Raises:
        ClientDisconnected: The client went away first (counted as 499).
        DeadlineExceeded: ``timeout_s`` passed first (503 with Retry-After).
    """
    outcome: dict[str, Any] = {}

    async with anyio.create_task_group() as tasks:

        async def watch() -> None:
            await wait_for_disconnect(receive)
            outcome["disconnected"] = True
            tasks.cancel_scope.cancel()

        tasks.start_soon(watch)
        with anyio.move_on_after(timeout_s) as deadline:
            try:
                outcome["result"] = await work()
            except Exception as exc:  # re-raised below, outside the task group
                outcome["error"] = exc
        tasks.cancel_scope.cancel()
    if outcome.get("disconnected"):
        raise ClientDisconnected("the client went away before its answer was ready")
    if "error" in outcome:
        raise outcome["error"]
    if deadline.cancelled_caught or "result" not in outcome:
        raise DeadlineExceeded(
            f"the request was not done within {timeout_s:g} s; its work was stopped: "
            "retry later, or send fewer or shorter documents"
        )
    return outcome["result"]


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the ASGI server reports that the client disconnected."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def check_limits(documents: Sequence[DocumentIn], settings: ServerSettings) -> None:
    """Refuse a request over the document-count or per-document character limit.

    Raises:
        LimitExceeded: With the limit and what to change (413).
    """
    if len(documents) > settings.max_documents_per_request:
        raise LimitExceeded(
            f"the request has {len(documents)} documents; the limit is "
            f"{settings.max_documents_per_request} per request: send them in several requests"
        )
    limits = settings.document_limits
    for position, document in enumerate(documents):
        limits.check_characters(
            document.text, document_name(position, document.id, len(documents) == 1)
        )

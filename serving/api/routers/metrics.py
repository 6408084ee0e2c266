"""``GET /metrics``: the app's :class:`~serving.api.metrics.Metrics` in Prometheus text format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.dependencies import get_metrics
from serving.api.metrics import Metrics

router = APIRouter()


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format 0.0.4."}},
)
def metrics(metrics: Annotated[Metrics, Depends(get_metrics)]) -> Response:
    """Requests by route and status, latency, documents and tokens analysed, errors by type."""
    return Response(content=metrics.render(), media_type=CONTENT_TYPE_LATEST)

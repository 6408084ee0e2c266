"""``GET /v1/model``: what the loaded model tags, how it decides, and how well it did."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serving.api.dependencies import get_predictor
from serving.predictor import Predictor
from serving.schemas import EntityTypeInfo, ModelInfo, TopicInfo, error_responses

router = APIRouter()


@router.get(
    "/model", summary="Model labels, thresholds and metrics", responses=error_responses(503)
)
async def model(predictor: Annotated[Predictor, Depends(get_predictor)]) -> ModelInfo:
    """Entity types and topics with display names, kinds and thresholds, plus provenance."""
    return model_info(predictor)


def model_info(predictor: Predictor) -> ModelInfo:
    """Describe a predictor's model for clients (labels to show, thresholds applied)."""
    meta = predictor.metadata
    session = getattr(predictor, "session", None)
    return ModelInfo(
        name=meta.name,
        base_encoder=meta.base_encoder,
        max_length=meta.max_length,
        stride=meta.stride,
        entity_types=[
            EntityTypeInfo(label=label, display_name=meta.entity_display_names.get(label, label))
            for label in meta.entity_types
        ],
        topics=[
            TopicInfo(
                label=label,
                display_name=meta.topic_display_names.get(label, label),
                kind=meta.topic_kinds.get(label),
                threshold=meta.thresholds.get(label),
            )
            for label in meta.topic_labels
        ],
        thresholds=meta.thresholds,
        metrics=meta.metrics,
        versions=meta.versions,
        threads=getattr(session, "threads", None),
    )

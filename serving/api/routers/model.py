"""``GET /v1/model``: what the loaded model tags, how it decides, and how well it did."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serving.api.dependencies import get_predictor
from serving.predictor import Predictor
from serving.schemas import (
    EntityTypeInfo,
    ModelInfo,
    StoriesResponse,
    StoryInfo,
    TopicInfo,
    error_responses,
)

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
    stories = getattr(predictor, "stories", None)
    story_thresholds = stories.thresholds() if stories is not None else {}
    labels = list(meta.topic_labels) + [s for s in story_thresholds if s not in meta.topic_labels]
    topics = [
        TopicInfo(
            label=label,
            display_name=predictor.topic_display_name(label),
            kind=predictor.topic_kind(label),
            threshold=story_thresholds.get(label, meta.thresholds.get(label)),
            source="definition" if label in story_thresholds else "model",
        )
        for label in labels
    ]
    return ModelInfo(
        name=meta.name,
        base_encoder=meta.base_encoder,
        max_length=meta.max_length,
        stride=meta.stride,
        entity_types=[
            EntityTypeInfo(label=label, display_name=meta.entity_display_names.get(label, label))
            for label in meta.entity_types
        ],
        topics=topics,
        thresholds={
            topic.label: topic.threshold for topic in topics if topic.threshold is not None
        },
        metrics=meta.metrics,
        versions=meta.versions,
        threads=getattr(session, "threads", None),
    )


@router.get("/stories", summary="Loaded story definitions", responses=error_responses(503))
async def stories(predictor: Annotated[Predictor, Depends(get_predictor)]) -> StoriesResponse:
    """The story definitions this server scores (shipped and ``--stories``), with thresholds."""
    return stories_info(predictor)


def stories_info(predictor: Predictor) -> StoriesResponse:
    """Describe the loaded story definitions."""
    scorer = getattr(predictor, "stories", None)
    if scorer is None:
        return StoriesResponse(stories=[])
    return StoriesResponse(
        stories=[
            StoryInfo(
                label=story.name,
                display_names=story.definition.display_names.model_dump(),
                description=story.definition.description.model_dump(),
                threshold=story.combiner.threshold,
                calibrated_on=story.combiner.calibrated_on,
                anchors=[term.name for term in story.definition.terms.anchors],
                positive_examples=len(story.definition.examples.positive),
                near_miss_examples=len(story.definition.examples.near_miss),
                exclude_sections=list(story.definition.exclude_sections),
                replaces_model_head=story.name in predictor.metadata.topic_labels,
            )
            for story in scorer.stories
        ]
    )

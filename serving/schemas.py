"""Pydantic wire types of the HTTP API: what clients send and what they get back.

The shapes mirror :meth:`serving.predictor.DocumentResult.to_dict`, so the CLI's
JSON lines and the API's results read the same. Offsets are half-open
``[start, end)`` character positions into the text the client sent.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from serving.api.settings import ServerSettings

_EXAMPLE_TEXT = "زار الرئيس ماكرون بيروت أمس"
_EXAMPLE_ENTITIES: list[dict[str, Any]] = [
    {"text": "ماكرون", "name": "ماكرون", "label": "PER", "start": 11, "end": 17, "score": 0.9912},
    {"text": "بيروت", "name": "بيروت", "label": "LOC", "start": 18, "end": 23, "score": 0.9874},
]
_EXAMPLE_GROUPS: list[dict[str, Any]] = [
    {"name": "ماكرون", "label": "PER", "mentions": [0], "count": 1, "first": 11, "salience": 0.5},
    {"name": "بيروت", "label": "LOC", "mentions": [1], "count": 1, "first": 18, "salience": 0.5},
]
_EXAMPLE_RESULT: dict[str, Any] = {
    "id": "doc-1",
    "entities": _EXAMPLE_ENTITIES,
    "entity_groups": _EXAMPLE_GROUPS,
    "topics": [{"label": "politics", "score": 0.9731}],
    "topic_scores": {"politics": 0.9731, "sports": 0.0112},
    "warnings": [],
}

# The characters str.strip() removes, as one regular-expression class that JSON Schema
# validators (ECMA, Python, Rust engines) all read alike: a text must hold one other.
_SPACES = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
NOT_BLANK_PATTERN = "[^" + "".join(f"\\u{ord(c):04x}" for c in _SPACES) + "]"


class EntityOut(BaseModel):
    """A named entity; ``text == sent_text[start:end]`` always holds."""

    text: str = Field(description="The entity exactly as it appears in the text sent.")
    name: str = Field(
        description="Clean name: leading clitics (و ف ب ل ك, لل→ال) removed when what is left "
        "is a known name, diacritics and tatweel removed, hamza kept as written."
    )
    label: str = Field(description="Entity type, one of the model's entity_types.")
    start: int = Field(ge=0, description="First character, counted in the text sent.")
    end: int = Field(ge=0, description="One past the last character (half-open span).")
    score: float = Field(ge=0.0, le=1.0, description="Mean tag probability over the span.")


class EntityGroupOut(BaseModel):
    """Mentions of one entity in the document (same name, or one name inside the other)."""

    name: str = Field(description="The fullest clean name among the mentions.")
    label: str = Field(description="The mentions' most frequent entity type.")
    mentions: list[int] = Field(description="Indices into `entities`, in text order.")
    count: int = Field(ge=1, description="Number of mentions.")
    first: int = Field(ge=0, description="Start offset of the first mention.")
    salience: float = Field(
        ge=0.0,
        le=1.0,
        description="Share of the document's weighted mentions (title 3, lead 2, rest 1); "
        "the saliences of a document add up to 1.",
    )


class TopicOut(BaseModel):
    """A topic whose score is over its threshold."""

    label: str
    score: float = Field(ge=0.0, le=1.0)


class DocumentResultOut(BaseModel):
    """What khabar says about one document."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_RESULT]})

    id: str | None = Field(description="The id sent with the document, if any.")
    entities: list[EntityOut]
    entity_groups: list[EntityGroupOut] = Field(
        description="Mentions grouped by entity, most salient first."
    )
    topics: list[TopicOut] = Field(description="Topics over their thresholds, best first.")
    topic_scores: dict[str, float] = Field(description="Score of every topic label.")
    warnings: list[str] = Field(
        default_factory=list,
        description="Why part of the answer was held back, e.g. too little Arabic to judge "
        "topics (then `topics` is empty).",
    )


def _check_not_blank(text: str) -> str:
    """Reject whitespace-only text, which has nothing to analyse but would still cost a call."""
    if not text.strip():
        raise ValueError("text is empty; send at least one non-space character")
    return text


class DocumentIn(BaseModel):
    """One document of a batch request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        default=None, max_length=1000, description="Echoed in the result.", examples=["doc-1"]
    )
    text: str = Field(min_length=1, description="The document text.", examples=[_EXAMPLE_TEXT])

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, text: str) -> str:
        return _check_not_blank(text)


class AnalyzeRequest(BaseModel):
    """Either one ``text`` or a list of ``documents``, never both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": _EXAMPLE_TEXT},
                {"documents": [{"id": "doc-1", "text": _EXAMPLE_TEXT}]},
            ]
        },
    )

    text: str | None = Field(
        default=None,
        min_length=1,
        description="A single document; the response then has `result`.",
        examples=[_EXAMPLE_TEXT],
    )
    documents: list[DocumentIn] | None = Field(
        default=None,
        min_length=1,
        description="Several documents; the response then has `results`, in the same order.",
        examples=[[{"id": "doc-1", "text": _EXAMPLE_TEXT}]],
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("text", "documents"):
                if name in data and data[name] is None:
                    raise ValueError(f'"{name}" is null; leave it out instead')
        return data

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, text: str | None) -> str | None:
        return None if text is None else _check_not_blank(text)

    @model_validator(mode="after")
    def _exactly_one(self) -> AnalyzeRequest:
        if (self.text is None) == (self.documents is None):
            raise ValueError('send either "text" or "documents", not both and not neither')
        return self

    def to_documents(self) -> list[DocumentIn]:
        """The request as a list of documents, so one code path serves both shapes."""
        if self.documents is not None:
            return self.documents
        return [DocumentIn(text=self.text or "")]


class AnalyzeResponse(BaseModel):
    """Exactly one of ``result`` (request had ``text``) or ``results`` (had ``documents``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"result": _EXAMPLE_RESULT}, {"results": [_EXAMPLE_RESULT]}]
        }
    )

    result: DocumentResultOut | None = Field(
        default=None, description="Present when the request had `text`."
    )
    results: list[DocumentResultOut] | None = Field(
        default=None, description="Present when the request had `documents`; same order."
    )


class ErrorBody(BaseModel):
    """The body of every error response, whatever its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "document 3 has 120000 characters; the limit is 100000 per "
                    "document: split it into smaller documents",
                    "error_type": "limit_exceeded",
                }
            ]
        }
    )

    error: str = Field(description="What went wrong and what to change.")
    error_type: str = Field(description="Stable machine-readable kind of error.")


class EntityTypeInfo(BaseModel):
    """An entity type the model tags."""

    label: str
    display_name: str


class TopicInfo(BaseModel):
    """A topic label with its display name, kind and decision threshold."""

    label: str
    display_name: str
    kind: str | None = None
    threshold: float | None = None
    source: Literal["model", "definition"] = Field(
        default="model", description="A trained head of the model, or a story definition file."
    )


class StoryInfo(BaseModel):
    """A loaded story definition: scored without retraining (``configs/stories/*.yaml``)."""

    label: str
    display_names: dict[str, str] = Field(description="Arabic (ar) and English (en) names.")
    description: dict[str, str | None] = Field(description="What the story covers (ar, en).")
    threshold: float
    calibrated_on: str | None = Field(
        description="Labelled data the combiner was fitted on; null: the documented default."
    )
    anchors: list[str] = Field(description="Names of the key entities and terms.")
    positive_examples: int
    near_miss_examples: int
    exclude_sections: list[str] = Field(
        default_factory=list,
        description="Sections whose articles never belong to the story (they score 0).",
    )
    replaces_model_head: bool = Field(
        description="Whether the model also has a trained head of this name (it is replaced)."
    )


class StoriesResponse(BaseModel):
    """``GET /v1/stories``."""

    stories: list[StoryInfo]


class ModelInfo(BaseModel):
    """What the loaded model is and how well it did on its test sets."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    base_encoder: dict[str, Any]
    max_length: int
    stride: int
    entity_types: list[EntityTypeInfo]
    topics: list[TopicInfo]
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    versions: dict[str, str]
    threads: int | None = Field(default=None, description="onnxruntime intra-op threads.")


class HealthResponse(BaseModel):
    """Liveness or readiness of the server."""

    status: Literal["ok", "ready"] = Field(description='"ok" for /health, "ready" for /ready.')


# What each error status means on this API; routes document the ones they can send.
ERROR_STATUS_DESCRIPTIONS: dict[int, str] = {
    408: "The request body did not arrive within the server's body timeout; the connection "
    "is closed.",
    413: "Too large: the body, a document's characters or tokens, the number of documents or "
    "the request's tokens is over the server's limit; the error says which and the numbers.",
    422: "The request does not match the schema, or the body is not JSON; the error names "
    "the field or says why.",
    424: "The model failed on input that passed validation.",
    429: "Too many requests are already admitted; retry after `Retry-After` seconds.",
    500: "Unexpected server error; nothing was processed.",
    503: "Unavailable: the model is not loaded (still loading, or failed to load), the server "
    "is shutting down, the request passed its deadline, or the server holds its most "
    "connections. `Retry-After` says when to retry where it applies.",
}
# Any route can meet these: the body checks and the connection limit come before routing.
COMMON_ERROR_STATUSES = (408, 413, 500, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: each status with the one ErrorBody shape."""
    return {
        status: {"model": ErrorBody, "description": ERROR_STATUS_DESCRIPTIONS[status]}
        for status in statuses
    }


def describe_limits_in_schema(schema: dict[str, Any], settings: ServerSettings) -> None:
    """Write the server's limits and every error status into its OpenAPI document.

    Pydantic cannot say "exactly one of" nor the limits, which are settings: the
    request schema gets ``oneOf`` required ``text`` / ``documents`` (no nulls), the
    character and document limits as ``maxLength`` / ``maxItems``, and the non-blank
    rule as a pattern; the response says it holds exactly one of ``result`` and
    ``results``; every operation lists the statuses any route can answer.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    text_schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": settings.max_chars_per_document,
        "pattern": NOT_BLANK_PATTERN,
    }
    request = components.get("AnalyzeRequest")
    if request is not None:
        properties = request["properties"]
        properties["text"] = {
            **text_schema,
            "title": "Text",
            "description": properties["text"].get("description", ""),
        }
        documents = properties["documents"]
        properties["documents"] = {
            "type": "array",
            "items": {"$ref": "#/components/schemas/DocumentIn"},
            "minItems": 1,
            "maxItems": settings.max_documents_per_request,
            "title": "Documents",
            "description": documents.get("description", ""),
        }
        request["oneOf"] = [{"required": ["text"]}, {"required": ["documents"]}]
        request["additionalProperties"] = False
    document = components.get("DocumentIn")
    if document is not None:
        document["properties"]["text"] = {
            **text_schema,
            "title": "Text",
            "description": document["properties"]["text"].get("description", ""),
        }
    response = components.get("AnalyzeResponse")
    if response is not None:
        properties = response["properties"]
        properties["result"] = {
            "$ref": "#/components/schemas/DocumentResultOut",
            "description": properties["result"].get("description", ""),
        }
        properties["results"] = {
            "type": "array",
            "items": {"$ref": "#/components/schemas/DocumentResultOut"},
            "description": properties["results"].get("description", ""),
        }
        response["oneOf"] = [{"required": ["result"]}, {"required": ["results"]}]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status in COMMON_ERROR_STATUSES:
                responses.setdefault(
                    str(status),
                    {
                        "description": ERROR_STATUS_DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )

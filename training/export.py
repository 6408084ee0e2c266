"""``khabar export``'s model files: a trained run -> the tokenizer and ONNX graphs.

Steps: vocabulary trimming unless the run's checkpoint already holds the trimmed
vocabulary (tokenizer and embedding rows together, proven one-to-one on the corpus),
``torch.onnx.export`` with dynamic batch and sequence axes from an eager-attention copy
(so onnxruntime can fuse attention), onnxruntime's transformer graph optimiser, dynamic
int8 quantisation, and a parity check of the fp32 graph against the torch logits. The
dev-set choices on the graphs are ``training/dev_choices.py``'s; the files are written
into a staging directory (``training/staging.py``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.errors import ConfigError, ParityError
from serving.metadata import TOKENIZER_NAME, ModelMetadata
from serving.session import OnnxSession
from training.config import ExportConfig
from training.model import KhabarModel
from training.rundir import CHECKPOINT_DIR, library_versions, read_run
from training.staging import staged_directory
from training.vocab import trim_model

logger = logging.getLogger(__name__)

FP32_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"


@dataclass(frozen=True)
class ExportReport:
    """What export measured: parity, sizes, vocabulary."""

    parity_max_abs_diff: dict[str, float]
    sizes_mb: dict[str, float]
    vocab: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for metadata and logs."""
        return {
            "parity_max_abs_diff": self.parity_max_abs_diff,
            "sizes_mb": self.sizes_mb,
            "vocab": self.vocab,
        }


class _OnnxWrapper(torch.nn.Module):
    """Returns the heads' outputs as a tuple in a fixed order, for the exporter."""

    def __init__(self, model: KhabarModel) -> None:
        super().__init__()
        self.model = model
        self.names = [
            name
            for name, head in (
                ("entity_logits", model.entity_head),
                ("topic_logits", model.topic_head),
            )
            if head is not None
        ]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        outputs = self.model(input_ids, attention_mask)
        return tuple(outputs[name] for name in self.names)


def load_run(run_dir: Path) -> tuple[dict[str, Any], KhabarModel]:
    """Read ``run.json`` and the checkpoint, with eager attention (what ONNX fuses best)."""
    run = read_run(run_dir)
    return run, KhabarModel.load(run_dir / CHECKPOINT_DIR, attn_implementation="eager")


def _export_fp32(model: KhabarModel, path: Path, opset: int) -> list[str]:
    wrapper = _OnnxWrapper(model).eval()
    ids = torch.randint(5, 100, (2, 16), dtype=torch.int64)
    mask = torch.ones_like(ids)
    dynamic = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
    }
    for name in wrapper.names:
        dynamic[name] = {0: "batch", 1: "sequence"} if name == "entity_logits" else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=wrapper.names,
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    return wrapper.names


def optimise_onnx(path: Path, config: Any) -> None:
    """Fuse a BERT graph in place (attention, layer norms) for a ``transformers`` config."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimised = optimize_model(
        str(path),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
    )
    optimised.save_model_to_file(str(path))
    logger.info("fused operators: %s", optimised.get_fused_operator_statistics())


def quantise_onnx(source: Path, target: Path, per_channel: bool) -> None:
    """Dynamic int8 quantisation of a (fused) graph's weights."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference;
    # their outputs are float, which is what the quantiser needs to be told.
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def parity(model: KhabarModel, onnx_path: Path, pad_id: int, seed: int = 0) -> dict[str, float]:
    """Max absolute logit difference between torch and an ONNX file on a padded batch."""
    generator = np.random.default_rng(seed)
    vocab = model.encoder.get_input_embeddings().weight.shape[0]
    ids = generator.integers(5, vocab, size=(3, 40), dtype=np.int64)
    mask = np.ones_like(ids)
    ids[1, 25:] = pad_id
    mask[1, 25:] = 0
    session = OnnxSession(onnx_path, threads=1)
    onnx_outputs = session.run(ids, mask)
    with torch.no_grad():
        torch_outputs = model(torch.from_numpy(ids), torch.from_numpy(mask))
    diffs = {}
    for name, value in torch_outputs.items():
        reference = value.numpy()
        if name == "entity_logits":  # padded positions are never read
            keep = mask.astype(bool)
            diffs[name] = float(np.abs(reference[keep] - onnx_outputs[name][keep]).max())
        else:
            diffs[name] = float(np.abs(reference - onnx_outputs[name]).max())
    return diffs


def trimmed_in_training(metadata: ModelMetadata) -> bool:
    """Whether a run's checkpoint and tokenizer already hold the trimmed vocabulary.

    ``khabar train`` trims on the recipe's training and dev texts (``training.trim_vocab``)
    and records it in the draft metadata's ``base_encoder``.
    """
    return bool(metadata.base_encoder.get("vocabulary", {}).get("trimmed"))


def _vocabulary(
    model: KhabarModel,
    run_dir: Path,
    metadata: ModelMetadata,
    settings: ExportConfig,
    corpus: list[list[str]] | None,
    directory: Path,
) -> dict[str, Any]:
    """Write the model's tokenizer into ``directory``, trimming it when the run did not."""
    if settings.trim_vocab and trimmed_in_training(metadata):
        # Export reads the run's texts (with the topic caps lifted, a superset), and the
        # trimmed tokenizer splits them into the pieces it kept: trimming again keeps
        # every piece. The record is the one training made.
        shutil.copy(run_dir / TOKENIZER_NAME, directory / TOKENIZER_NAME)
        return dict(metadata.base_encoder["vocabulary"])
    if not settings.trim_vocab:
        shutil.copy(run_dir / TOKENIZER_NAME, directory / TOKENIZER_NAME)
        return {"trimmed": False}
    if not corpus:
        raise ConfigError("vocabulary trimming needs a corpus (the recipe's texts)")
    vocab = trim_model(model, run_dir / TOKENIZER_NAME, corpus, directory)
    vocab.pop("new_to_old")
    return vocab


def build_model_files(
    run_dir: Path,
    directory: Path,
    settings: ExportConfig,
    corpus: list[list[str]] | None = None,
) -> tuple[ModelMetadata, ExportReport]:
    """Write a run's tokenizer and ONNX file(s) into ``directory``; ``khabar.json`` is not written.

    Args:
        run_dir: A directory written by ``khabar train``.
        directory: An existing directory (a staging directory) to write into.
        settings: Export settings (optimise, quantise, trim, parity tolerance).
        corpus: Word-split documents for vocabulary trimming (required when trimming a
            run whose checkpoint is not trimmed yet).

    Returns:
        The model's metadata (thresholds still untuned) and the export report.

    Raises:
        ModelLoadError: The run is incomplete.
        ConfigError: Trimming was asked for without a corpus.
        ParityError: The fp32 graph differs from the torch model beyond the tolerance.
    """
    run, model = load_run(run_dir)
    metadata = ModelMetadata.model_validate(run["metadata"])
    vocab = _vocabulary(model, run_dir, metadata, settings, corpus, directory)
    fp32 = directory / FP32_NAME
    _export_fp32(model, fp32, settings.opset)
    if settings.optimize:
        optimise_onnx(fp32, model.encoder.config)
    diffs = parity(model, fp32, metadata.special_tokens.pad_id)
    worst = max(diffs.values())
    if worst > settings.parity_tolerance:
        raise ParityError(
            f"ONNX fp32 differs from torch by {worst:.2e} (> {settings.parity_tolerance:.0e})"
        )
    files = {"fp32": FP32_NAME}
    if settings.quantize:
        quantise_onnx(fp32, directory / INT8_NAME, settings.per_channel)
        files["int8"] = INT8_NAME
    sizes = {name: round((directory / f).stat().st_size / 1e6, 2) for name, f in files.items()}
    metadata = metadata.model_copy(
        update={
            "onnx_files": files,
            "default_variant": "int8" if "int8" in files else "fp32",
            "versions": library_versions(),
            "training": {
                "config": run["config"],
                # What this export ran with, overrides included.
                "export": settings.model_dump(mode="json"),
                "data_files": run["data_files"],
                "data_counts": run["data_counts"],
                "history": run["history"],
                "topic_refit": {
                    k: v for k, v in run.get("topic_refit", {}).items() if k != "history"
                },
            },
        }
    )
    report = ExportReport(diffs, sizes, vocab)
    metadata = metadata.model_copy(
        update={"metrics": {**metadata.metrics, "export": report.as_dict()}}
    )
    return metadata, report


def export_run(
    run_dir: Path,
    output_dir: Path,
    settings: ExportConfig,
    corpus: list[list[str]] | None = None,
) -> tuple[ModelMetadata, ExportReport]:
    """Export a training run to ``output_dir`` (replaced, if it exists, once the export is done).

    The ONNX files and ``khabar.json`` only, with no dev-set choices (``khabar export``
    makes those: :func:`training.workflows.run_export`). Arguments and errors as
    :func:`build_model_files`; a failed export leaves ``output_dir`` as it was.
    """
    with staged_directory(output_dir) as staging:
        metadata, report = build_model_files(run_dir, staging, settings, corpus)
        metadata.save(staging)
    return metadata, report

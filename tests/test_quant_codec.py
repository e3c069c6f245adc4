"""Packed export: sizes, bit-exact restore (with and without quantizers), metadata, corrupt input."""

from __future__ import annotations

import math
import struct
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from quantprompt import quant
from quantprompt.quant import FormatError, QuantConfig


class Prompt(nn.Module):
    def __init__(self, shape=(4, 512), seed: int = 0, dtype=torch.float32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ctx = nn.Parameter((torch.randn(*shape, generator=g) * 0.02).to(dtype))


class Two(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.prompt_learner = Prompt(seed=seed)
        torch.manual_seed(seed)
        self.proj = nn.Linear(12, 7)


def _quantized(bits: int = 1, **kw) -> Prompt:
    m = Prompt(**kw)
    quant.quantize_(m, QuantConfig(bits=bits, targets=["ctx"]))
    return m


def test_coop_context_is_260_bytes_with_small_header() -> None:
    m = _quantized(bits=1)
    blob = quant.export(m)
    rep = quant.size_report(m)
    assert rep["payload_bytes"] == 260
    assert rep["tensors"]["ctx"]["index_bytes"] == 256 and rep["tensors"]["ctx"]["codebook_bytes"] == 4
    assert rep["header_bytes"] < 64
    assert len(blob) == rep["total_bytes"] == rep["payload_bytes"] + rep["header_bytes"]
    assert rep["unquantized_fp16_bytes"] == 0
    assert quant.size_report(blob) == {k: v for k, v in rep.items() if k != "unquantized_fp16_bytes"}


def test_unquantized_fp16_bytes_for_plain_coop() -> None:
    rep = quant.size_report(Prompt())
    assert rep["unquantized_fp16_bytes"] == 4096 and rep["payload_bytes"] == 0
    two = Two()
    quant.quantize_(two, QuantConfig(bits=2, targets=["prompt_learner.ctx"]))
    two.proj.bias.requires_grad_(False)
    assert quant.size_report(two)["unquantized_fp16_bytes"] == 2 * 12 * 7


@pytest.mark.parametrize("bits,shape,per_row", [(1, (4, 512), False), (2, (3, 7, 5), False), (3, (16, 10), True),
                                                (4, (100,), False), (5, (9, 33), True), (8, (2, 300), False)])
def test_sizes_and_bit_exact_roundtrip(bits: int, shape: tuple, per_row: bool) -> None:
    src = Prompt(shape, seed=bits)
    quant.quantize_(src, QuantConfig(bits=bits, targets=["ctx"], per_row=per_row))
    meta = {"method": "qcoop", "classnames": ["cat", "dog"], "bits": bits}
    blob = quant.export(src, metadata=meta)
    n = math.prod(shape)
    rows = shape[0] if per_row else 1
    rep = quant.size_report(src, metadata=meta)
    assert rep["payload_bytes"] == math.ceil(bits * n / 8) + 2 * rows * 2 ** bits
    assert len(blob) == rep["payload_bytes"] + rep["header_bytes"] + rep["metadata_bytes"]
    assert rep["metadata_bytes"] > 0 and quant.read_metadata(blob) == meta
    want = src.ctx.detach().clone()
    # into a plain module (no quantizer)
    plain = Prompt(shape, seed=99)
    assert quant.load_into(plain, blob) == ["ctx"]
    assert torch.equal(plain.ctx.detach(), want)
    # into a quantized module: forward reproduces the values, with and after removing the quantizer
    dst = Prompt(shape, seed=98)
    quant.quantize_(dst, QuantConfig(bits=bits, targets=["ctx"], per_row=per_row))
    quant.load_into(dst, blob)
    assert torch.equal(dst.ctx, want)
    assert quant.export(dst) == quant.export(src)
    quant.remove_(dst, bake=True)
    assert torch.equal(dst.ctx.detach(), want)


def test_fp16_module_and_ptq_load() -> None:
    src = _quantized(bits=2, dtype=torch.float16)
    blob = quant.export(src)
    dst = Prompt(dtype=torch.float16, seed=5)
    quant.quantize_(dst, QuantConfig(bits=2, targets=["ctx"], mode="ptq"))
    quant.load_into(dst, blob)
    assert torch.equal(dst.ctx, src.ctx)


def test_format_errors() -> None:
    m = _quantized(bits=1)
    blob = quant.export(m, metadata={"a": 1})
    with pytest.raises(FormatError, match="truncated"):
        quant.load_into(Prompt(), blob[:-1])
    with pytest.raises(FormatError, match="truncated"):
        quant.load_into(Prompt(), blob[:5])
    with pytest.raises(FormatError, match="magic"):
        quant.load_into(Prompt(), b"XXXX" + blob[4:])
    with pytest.raises(FormatError, match="version"):
        quant.read_metadata(blob[:4] + bytes([2]) + blob[5:])
    bad = bytearray(blob)
    bad[-3] ^= 0x10
    with pytest.raises(FormatError, match="CRC32 mismatch in the payload"):
        quant.load_into(Prompt(), bytes(bad))
    bad = bytearray(blob)
    bad[14] ^= 0x01  # inside the metadata
    with pytest.raises(FormatError, match="header CRC32"):
        quant.read_metadata(bytes(bad))
    with pytest.raises(FormatError, match="trailing"):
        quant.load_into(Prompt(), blob + b"\0")
    with pytest.raises(FormatError, match="not a parameter"):
        quant.load_into(Two(), blob)
    with pytest.raises(FormatError, match="shape"):
        quant.load_into(Prompt((4, 256)), blob)
    q2 = Prompt()
    quant.quantize_(q2, QuantConfig(bits=2, targets=["ctx"]))
    with pytest.raises(FormatError, match="bits=1"):
        quant.load_into(q2, blob)
    assert isinstance(FormatError("x"), ValueError)
    with pytest.raises(ValueError, match="JSON"):
        quant.export(m, metadata={"x": object()})
    with pytest.raises(ValueError, match="no quantized tensor"):
        quant.export(Prompt())


def test_load_is_atomic() -> None:
    src = Two()
    quant.quantize_(src, QuantConfig(bits=1, targets=["prompt_learner.ctx", "proj.weight"]))
    blob = quant.export(src)
    dst = Two(seed=3)
    dst.proj = nn.Linear(12, 8)  # shape mismatch on the second tensor
    before = dst.prompt_learner.ctx.detach().clone()
    with pytest.raises(FormatError, match="proj.weight"):
        quant.load_into(dst, blob)
    assert torch.equal(dst.prompt_learner.ctx.detach(), before)


_VALID = quant.export(_quantized(bits=2, shape=(3, 40)), metadata={"clip": "ViT-B/16"})


def _try(blob: bytes) -> None:
    target = Prompt((3, 40))
    try:
        quant.load_into(target, blob)
        quant.read_metadata(blob)
    except FormatError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_only_formaterror(data: bytes) -> None:
    _try(data)
    _try(_VALID[:16] + data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, len(_VALID)), st.binary(max_size=8))
def test_mutated_blobs_only_formaterror(edits: list, cut: int, extra: bytes) -> None:
    b = bytearray(_VALID)
    for pos, val in edits:
        b[pos] = val
    _try(bytes(b))
    _try(bytes(b[:cut]) + extra)
    # header mutations with a recomputed header CRC reach the deeper checks (shape, bits, names, sizes)
    rep = quant.size_report(_VALID)
    crc_pos = rep["header_bytes"] + rep["metadata_bytes"] - 4
    h = bytearray(_VALID)
    for pos, val in edits:
        h[pos % crc_pos] = val
    h[crc_pos:crc_pos + 4] = struct.pack("<I", zlib.crc32(bytes(h[:crc_pos])))
    _try(bytes(h))


def test_header_layout_is_documented() -> None:
    magic, version, flags, n, meta_len = struct.unpack("<4sBBHI", _VALID[:12])
    assert (magic, version, flags, n) == (b"QPRM", 1, 0, 1) and meta_len == len(b'{"clip":"ViT-B/16"}')

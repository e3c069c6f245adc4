"""The packed prompt format (.qpt): b-bit indices + fp16 codebooks + a small checked header.  No pickle.

Layout (little-endian)::

    fixed   magic "QPRM" | version u8 (=1) | flags u8 (=0) | n_tensors u16 | metadata_len u32      12 B
    meta    metadata_len bytes of UTF-8 JSON (an object), or nothing
    per tensor  name_len u16 | name UTF-8 | ndim u8 | dims u32 x ndim | bits u8 |
                flags u8 (bit0 norm, bit1 per_row) | crc32 u32 of this tensor's payload
    crc     crc32 u32 of everything above (fixed + meta + tensor headers)                       4 B
    payload per tensor, in header order: ceil(bits * numel / 8) bytes of indices (bit i*b.. of the stream, LSB
            first) + rows * 2^bits fp16 denormalized centers (rows = shape[0] when per_row, else 1)

CoOp's context (4 x 512, b = 1) gives 256 + 4 = 260 payload bytes and a 16 + 35 = 51-byte header.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .quantizer import KMeansQuantizer
from .targets import param_entries

__all__ = ["FormatError", "export", "load_into", "read_metadata", "size_report", "MAGIC", "VERSION"]

MAGIC = b"QPRM"
VERSION = 1
_FIXED = struct.Struct("<4sBBHI")
_MAX_NDIM = 16
BytesLike = Union[bytes, bytearray, memoryview]


class FormatError(ValueError):
    """A .qpt blob that is truncated, corrupted, of another version, or does not fit the module."""


class _Record(NamedTuple):
    name: str
    shape: tuple[int, ...]
    bits: int
    norm: bool
    per_row: bool
    idx: np.ndarray  # (rows, m) uint8
    table: np.ndarray  # (rows, 2^bits) float16
    header_bytes: int


def _rows(shape: tuple[int, ...], per_row: bool) -> int:
    return shape[0] if (per_row and len(shape) >= 2) else 1


def _pack(idx: np.ndarray, bits: int) -> bytes:
    flat = idx.reshape(-1).astype(np.uint8)
    if bits == 8:
        return flat.tobytes()
    planes = (flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def _unpack(buf: bytes, bits: int, n: int) -> np.ndarray:
    raw = np.frombuffer(buf, dtype=np.uint8)
    if bits == 8:
        return raw[:n].copy()
    planes = np.unpackbits(raw, count=n * bits, bitorder="little").reshape(n, bits)
    out = np.zeros(n, dtype=np.uint8)
    for j in range(bits):
        out |= planes[:, j] << j
    return out


def _tensor_header(name: str, shape: tuple[int, ...], bits: int, norm: bool, per_row: bool, crc: int) -> bytes:
    nb = name.encode("utf-8")
    return (struct.pack("<H", len(nb)) + nb + struct.pack("<B", len(shape))
            + struct.pack(f"<{len(shape)}I", *shape) + struct.pack("<BBI", bits, int(norm) | (int(per_row) << 1), crc))


def _metadata_bytes(metadata: Optional[dict[str, Any]]) -> bytes:
    if metadata is None:
        return b""
    if not isinstance(metadata, dict):
        raise ValueError(f"export: metadata must be a dict (JSON object) or None, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ValueError(f"export: metadata is not JSON-serializable ({err}); use plain str/int/float/list/dict") \
            from None


def _active_quantizers(module: nn.Module, what: str, strict: bool = True
                       ) -> list[tuple[str, torch.Tensor, KMeansQuantizer]]:
    found = []
    for e in param_entries(module):
        if not parametrize.is_parametrized(e.owner, e.attr):
            continue
        for p in e.owner.parametrizations[e.attr]:
            if isinstance(p, KMeansQuantizer):
                if not bool(p.active):
                    if not strict:
                        continue
                    hint = "call quant.finalize_ first" if p.mode == "ptq" else "its mode is 'off'"
                    raise ValueError(f"{what}: the quantizer of {e.name!r} is not active ({hint})")
                found.append((e.name, e.tensor, p))
    if not found:
        raise ValueError(f"{what}: {type(module).__name__} has no quantized tensor; call quant.quantize_ first")
    return found


def _encode(module: nn.Module, metadata: Optional[dict[str, Any]], strict: bool = True
            ) -> tuple[bytes, dict[str, Any]]:
    meta = _metadata_bytes(metadata)
    heads, payloads, tensors = [], [], {}
    for name, tensor, q in _active_quantizers(module, "export", strict):
        with torch.no_grad():
            idx, table = q.encode(tensor)
        if not bool(torch.isfinite(table).all()):
            raise ValueError(f"export: the fp16 codebook of {name!r} overflows fp16 (|value| > 65504); the "
                             "weights are out of the range the format stores")
        shape = tuple(int(s) for s in tensor.shape)
        packed = _pack(idx.cpu().numpy(), q.bits)
        book = table.cpu().numpy().astype("<f2").tobytes()
        body = packed + book
        head = _tensor_header(name, shape, q.bits, q.norm, q.per_row, zlib.crc32(body))
        if len(head) > 0xFFFF or len(shape) > _MAX_NDIM:
            raise ValueError(f"export: tensor {name!r} has too many dims or too long a name for the format")
        heads.append(head)
        payloads.append(body)
        numel = int(tensor.numel())
        tensors[name] = {
            "shape": list(shape), "numel": numel, "bits": q.bits, "norm": q.norm, "per_row": q.per_row,
            "index_bytes": len(packed), "codebook_bytes": len(book), "payload_bytes": len(body),
            "header_bytes": len(head), "fp16_bytes": 2 * numel,
        }
    if len(heads) > 0xFFFF:
        raise ValueError("export: more than 65535 quantized tensors")
    header = _FIXED.pack(MAGIC, VERSION, 0, len(heads), len(meta)) + meta + b"".join(heads)
    header += struct.pack("<I", zlib.crc32(header))
    blob = header + b"".join(payloads)
    report = {
        "payload_bytes": sum(len(p) for p in payloads),
        "header_bytes": len(header) - len(meta),
        "metadata_bytes": len(meta),
        "total_bytes": len(blob),
        "tensors": tensors,
    }
    return blob, report


def export(module: nn.Module, metadata: Optional[dict[str, Any]] = None) -> bytes:
    """Pack every (active) quantized tensor of ``module`` into bytes: indices, fp16 codebooks, header.

    ``metadata``: optional JSON-able dict stored in its own header section (read back by ``read_metadata``).
    The stored values are exactly the values the module's forward uses now.
    """
    return _encode(module, metadata)[0]


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.b = blob
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.b):
            raise FormatError(f"truncated blob: {what} needs {n} bytes at offset {self.pos}, "
                              f"only {len(self.b) - self.pos} left")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out


def _parse(blob: BytesLike) -> tuple[dict[str, Any], list[_Record], int]:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    r = _Reader(blob)
    magic, version, _flags, n_tensors, meta_len = _FIXED.unpack(r.take(_FIXED.size, "fixed header"))
    if magic != MAGIC:
        raise FormatError(f"bad magic {magic!r}: not a QuantPrompt packed prompt (expected {MAGIC!r})")
    if version != VERSION:
        raise FormatError(f"unknown format version {version} (this reader knows version {VERSION}); "
                          "upgrade quantprompt")
    if n_tensors == 0:
        raise FormatError("blob holds no tensors")
    meta_raw = r.take(meta_len, "metadata")
    heads = []
    for t in range(n_tensors):
        start = r.pos
        (name_len,) = struct.unpack("<H", r.take(2, f"tensor {t} name length"))
        try:
            name = r.take(name_len, f"tensor {t} name").decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"tensor {t}: name is not valid UTF-8") from None
        (ndim,) = struct.unpack("<B", r.take(1, f"tensor {name!r} ndim"))
        if ndim > _MAX_NDIM:
            raise FormatError(f"tensor {name!r}: ndim {ndim} > {_MAX_NDIM}")
        shape = struct.unpack(f"<{ndim}I", r.take(4 * ndim, f"tensor {name!r} shape"))
        bits, flags, crc = struct.unpack("<BBI", r.take(6, f"tensor {name!r} bits/flags/crc"))
        if not 1 <= bits <= 8:
            raise FormatError(f"tensor {name!r}: bits={bits} outside 1..8")
        heads.append((name, tuple(shape), bits, bool(flags & 1), bool(flags & 2), crc, r.pos - start))
    header_end = r.pos
    (hcrc,) = struct.unpack("<I", r.take(4, "header CRC32"))
    if zlib.crc32(blob[:header_end]) != hcrc:
        raise FormatError("header CRC32 mismatch: the blob is corrupted")
    try:
        meta = json.loads(meta_raw.decode("utf-8")) if meta_len else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FormatError(f"metadata is not valid UTF-8 JSON ({err})") from None
    if not isinstance(meta, dict):
        raise FormatError("metadata is not a JSON object")
    names = [h[0] for h in heads]
    if len(set(names)) != len(names):
        raise FormatError(f"duplicate tensor names in blob: {names}")
    records = []
    for name, shape, bits, norm, per_row, crc, hbytes in heads:
        numel = math.prod(shape)
        rows = _rows(shape, per_row)
        if numel == 0:
            raise FormatError(f"tensor {name!r}: empty shape {shape}")
        n_idx = (bits * numel + 7) // 8
        n_book = rows * (2 ** bits) * 2
        body = r.take(n_idx + n_book, f"payload of {name!r}")
        if zlib.crc32(body) != crc:
            raise FormatError(f"CRC32 mismatch in the payload of {name!r}: the blob is corrupted")
        idx = _unpack(body[:n_idx], bits, numel).reshape(rows, -1)
        table = np.frombuffer(body[n_idx:], dtype="<f2").astype(np.float16).reshape(rows, 2 ** bits)
        if not np.isfinite(table).all():
            raise FormatError(f"tensor {name!r}: the codebook holds NaN or inf")
        records.append(_Record(name, shape, bits, norm, per_row, idx, table, hbytes))
    if r.pos != len(blob):
        raise FormatError(f"{len(blob) - r.pos} unexpected trailing bytes after the last payload")
    return meta, records, meta_len


def read_metadata(blob: BytesLike) -> dict[str, Any]:
    """The metadata dict stored by ``export`` ({} when none); validates the whole blob (FormatError)."""
    return _parse(blob)[0]


@torch.no_grad()
def load_into(module: nn.Module, blob: BytesLike) -> list[str]:
    """Write the blob's quantized values into ``module``'s parameters, bit-exactly; returns the tensor names.

    Works whether or not the module has quantizers.  Where a quantizer is attached, its codebook is set so that
    the forward reproduces exactly the stored values (and it is switched on, also for PTQ).  Everything is
    checked before anything is written: a tensor name, shape, bit width or per_row layout that does not fit the
    module raises FormatError.
    """
    _, records, _ = _parse(blob)
    entries = {e.name: e for e in param_entries(module)}
    plan = []
    for rec in records:
        e = entries.get(rec.name)
        if e is None:
            raise FormatError(f"tensor {rec.name!r} of the blob is not a parameter of {type(module).__name__}; "
                              f"its parameters: {', '.join(sorted(entries)) or '(none)'}")
        if tuple(e.tensor.shape) != rec.shape:
            raise FormatError(f"tensor {rec.name!r}: blob shape {list(rec.shape)} != module shape "
                              f"{list(e.tensor.shape)}")
        if e.tensor.dtype not in (torch.float16, torch.float32, torch.float64):
            raise FormatError(f"tensor {rec.name!r}: module dtype {e.tensor.dtype} cannot hold fp16 values exactly")
        q = None
        if parametrize.is_parametrized(e.owner, e.attr):
            qs = [p for p in e.owner.parametrizations[e.attr] if isinstance(p, KMeansQuantizer)]
            q = qs[0] if qs else None
        if q is not None and (q.bits != rec.bits or q.per_row != rec.per_row):
            raise FormatError(f"tensor {rec.name!r}: blob has bits={rec.bits}, per_row={rec.per_row} but the "
                              f"module's quantizer has bits={q.bits}, per_row={q.per_row}")
        plan.append((rec, e, q))
    for rec, e, q in plan:
        dev = e.tensor.device
        table = torch.from_numpy(rec.table.copy()).to(dev)
        idx = torch.from_numpy(rec.idx.astype(np.int64)).to(dev)
        # canonical order: ascending codebook per row (indices remapped; values unchanged)
        table, order = torch.sort(table.float(), dim=1, stable=True)
        inverse = torch.argsort(order, dim=1)
        idx = inverse.gather(1, idx)
        values = table.gather(1, idx).to(torch.float16)
        e.tensor.copy_(values.reshape(rec.shape).to(e.tensor.dtype))
        if q is not None:
            x, mu, sd = q.normalize(e.tensor)
            centers = (table - mu) / sd
            q._set_codebook(x, centers)
            q.active.fill_(True)
            if not torch.equal(q.quantize(e.tensor), e.tensor.detach()):
                raise RuntimeError(f"load_into: the quantizer of {rec.name!r} does not reproduce the stored values "
                                   "exactly (please report this with the blob)")
    return [rec.name for rec, _, _ in plan]


def size_report(obj: Union[nn.Module, BytesLike], metadata: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Sizes in bytes of what ``export`` writes (for a module) or of a blob.

    Keys: payload_bytes (indices + codebooks), header_bytes (fixed header, tensor headers, CRC), metadata_bytes
    (the JSON section), total_bytes (= len(blob)), tensors {name: shape, numel, bits, norm, per_row,
    index_bytes, codebook_bytes, payload_bytes, header_bytes, fp16_bytes}; for a module also
    unquantized_fp16_bytes = 2 x numel of the trainable parameters (requires_grad) that carry no active
    quantizer: what they would take saved in fp16, CoOp-style, so a plain CoOp prompt (4 x 512 -> 4096 B) is
    reported on the same scale.  A module without quantizers gets a report with zero payload.
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        meta, records, meta_len = _parse(obj)
        tensors = {}
        for rec in records:
            numel = math.prod(rec.shape)
            ib = (rec.bits * numel + 7) // 8
            cb = rec.table.size * 2
            tensors[rec.name] = {"shape": list(rec.shape), "numel": numel, "bits": rec.bits, "norm": rec.norm,
                                 "per_row": rec.per_row, "index_bytes": ib, "codebook_bytes": cb,
                                 "payload_bytes": ib + cb, "header_bytes": rec.header_bytes, "fp16_bytes": 2 * numel}
        payload = sum(t["payload_bytes"] for t in tensors.values())
        n = len(bytes(obj))
        return {"payload_bytes": payload, "header_bytes": n - payload - meta_len, "metadata_bytes": meta_len,
                "total_bytes": n, "tensors": tensors}
    if not isinstance(obj, nn.Module):
        raise TypeError(f"size_report: expected an nn.Module or bytes, got {type(obj).__name__}")
    quantized_ids = set()
    for e in param_entries(obj):
        if parametrize.is_parametrized(e.owner, e.attr) and any(
                isinstance(p, KMeansQuantizer) and bool(p.active) for p in e.owner.parametrizations[e.attr]):
            quantized_ids.add(id(e.tensor))
    unquantized = sum(2 * e.tensor.numel() for e in param_entries(obj)
                      if e.tensor.requires_grad and id(e.tensor) not in quantized_ids)
    if quantized_ids:
        report = _encode(obj, metadata, strict=False)[1]
    else:
        meta = _metadata_bytes(metadata)
        report = {"payload_bytes": 0, "header_bytes": 0, "metadata_bytes": len(meta), "total_bytes": 0,
                  "tensors": {}}
    report["unquantized_fp16_bytes"] = unquantized
    return report

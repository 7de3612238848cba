"""Wire format for soft tokens: what the bridge actually sends, counted in real bytes.

Why: the source's quantization script counted bytes from a formula and never ran. Here each
payload is really built (codes bit-packed, int6 = 4 values in 3 bytes), its length is asserted
against `expected_bytes`, and `decode` gives back the tensor that B is re-run on.

Payload layout (little-endian throughout):

    offset 0   4 bytes  magic b"LBW1"
    offset 4   u8       format id (index into FORMATS)
    offset 5   u8       group size (GROUP = 32)
    offset 6   u16      M, number of soft tokens
    offset 8   u32      d, width of a soft token
    offset 12  u32      anchor length in UTF-8 bytes
    offset 16  fp32 × G one scale per group (not for fp32), G = ceil(M·d / 32)
               codes    fp32: 4 B/value; fp16: 2 B/value; int k: M·d codes of k bits, packed
                        LSB-first into ceil(M·d·k / 8) bytes (only the last byte is padded)
               anchor   UTF-8 bytes

Values are flattened row-major and grouped in runs of 32; the last group may be partial and
still carries a full scale. Quantisation is symmetric per group: scale = max|x| / qmax with
qmax = 2^(k-1) − 1 (127, 31, 7); code = round(x / scale) + qmax, stored unsigned in [0, 2·qmax].
fp16 also carries a per-group scale (qmax 1: values are sent as x / max|x| in [-1, 1]), as the
design card asks; it keeps any magnitude inside fp16's range. An all-zero group has scale 0 and
decodes to zeros.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np
import torch

FORMATS = ("fp32", "fp16", "int8", "int6", "int4")
GROUP = 32
MAGIC = b"LBW1"
HEADER = struct.Struct("<4sBBHII")  # magic, format id, group size, M, d, anchor bytes
assert HEADER.size == 16
_BITS = {"int8": 8, "int6": 6, "int4": 4}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"wire format {fmt!r} is not one of {FORMATS}")


def _qmax(fmt: str) -> int:
    return 2 ** (_BITS[fmt] - 1) - 1 if fmt in _BITS else 1


def expected_bytes(M: int, d: int, fmt: str, anchor_bytes: int) -> int:
    """Payload length by formula: header + group scales + packed codes + anchor."""
    _check_format(fmt)
    n = M * d
    if fmt == "fp32":
        return HEADER.size + 4 * n + anchor_bytes
    scales = 4 * math.ceil(n / GROUP)
    codes = 2 * n if fmt == "fp16" else math.ceil(n * _BITS[fmt] / 8)
    return HEADER.size + scales + codes + anchor_bytes


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integer codes of `bits` bits each, LSB-first, into ceil(n·bits/8) bytes."""
    codes = np.asarray(codes)
    if not 1 <= bits <= 8:
        raise ValueError(f"pack_bits: bits={bits} must be in 1..8")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"pack_bits: codes must be integers, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(f"pack_bits: codes must lie in [0, {2**bits - 1}], got [{codes.min()}, {codes.max()}]")
    flat = codes.astype(np.uint8).reshape(-1)
    bit_matrix = (flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(bit_matrix.reshape(-1), bitorder="little").tobytes()


def unpack_bits(buf: bytes, bits: int, n: int) -> np.ndarray:
    """Inverse of `pack_bits`: n codes (uint8) from exactly ceil(n·bits/8) bytes."""
    if not 1 <= bits <= 8:
        raise ValueError(f"unpack_bits: bits={bits} must be in 1..8")
    need = math.ceil(n * bits / 8)
    if len(buf) != need:
        raise ValueError(f"unpack_bits: {n} codes of {bits} bits need {need} bytes, got {len(buf)}")
    flat_bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little", count=n * bits)
    weights = (1 << np.arange(bits)).astype(np.uint16)
    return (flat_bits.reshape(n, bits).astype(np.uint16) @ weights).astype(np.uint8)


def _group_scales(flat: np.ndarray, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """fp32 scale per group of 32 and the same scales broadcast to every value (float64)."""
    n_groups = math.ceil(flat.size / GROUP)
    padded = np.zeros(n_groups * GROUP, dtype=np.float64)
    padded[: flat.size] = np.abs(flat)
    scales = (padded.reshape(n_groups, GROUP).max(axis=1) / qmax).astype("<f4")
    per_value = np.repeat(scales.astype(np.float64), GROUP)[: flat.size]
    return scales, per_value


def encode(soft: torch.Tensor, anchor: str, fmt: str) -> bytes:
    """Serialise M soft tokens of width d plus the anchor text into one payload (layout above)."""
    _check_format(fmt)
    if soft.dim() != 2:
        raise ValueError(f"encode: soft tokens must be [M, d], got shape {tuple(soft.shape)}")
    M, d = soft.shape
    if not 0 < M < 2**16 or not 0 < d < 2**32:
        raise ValueError(f"encode: M={M} must be in 1..65535 and d={d} in 1..2^32-1")
    flat = soft.detach().to("cpu", torch.float64).numpy().reshape(-1)
    if not np.isfinite(flat).all():
        raise ValueError("encode: soft tokens contain NaN or inf; nothing finite to quantise")
    anchor_utf8 = anchor.encode("utf-8")
    parts = [HEADER.pack(MAGIC, FORMATS.index(fmt), GROUP, M, d, len(anchor_utf8))]
    if fmt == "fp32":
        parts.append(flat.astype("<f4").tobytes())
    else:
        qmax = _qmax(fmt)
        scales, per_value = _group_scales(flat, qmax)
        safe = np.where(per_value > 0, per_value, 1.0)
        parts.append(scales.tobytes())
        if fmt == "fp16":
            parts.append((flat / safe).astype("<f2").tobytes())
        else:
            codes = np.clip(np.rint(flat / safe), -qmax, qmax).astype(np.int16) + qmax
            parts.append(pack_bits(codes, _BITS[fmt]))
    parts.append(anchor_utf8)
    payload = b"".join(parts)
    want = expected_bytes(M, d, fmt, len(anchor_utf8))
    assert len(payload) == want, f"{fmt} payload is {len(payload)} bytes, formula says {want}"
    return payload


def decode(payload: bytes) -> tuple[torch.Tensor, str]:
    """Parse a payload: the dequantised soft tokens as float32 [M, d], and the anchor text."""
    if len(payload) < HEADER.size:
        raise ValueError(f"decode: truncated payload, {len(payload)} bytes, shorter than the {HEADER.size}-byte header")
    magic, fmt_id, group, M, d, n_anchor = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise ValueError(f"decode: wrong magic {magic!r}, expected {MAGIC!r}; not a bridge wire payload")
    if fmt_id >= len(FORMATS):
        raise ValueError(f"decode: unknown format id {fmt_id}; known ids 0..{len(FORMATS) - 1} = {FORMATS}")
    if group != GROUP:
        raise ValueError(f"decode: group size {group} in header, this decoder supports {GROUP}")
    fmt = FORMATS[fmt_id]
    want = expected_bytes(M, d, fmt, n_anchor)
    if len(payload) != want:
        kind = "truncated" if len(payload) < want else "overlong"
        raise ValueError(f"decode: {kind} payload, {len(payload)} bytes; header ({fmt}, M={M}, d={d}) implies {want}")
    n, pos = M * d, HEADER.size
    if fmt == "fp32":
        values = np.frombuffer(payload, dtype="<f4", count=n, offset=pos).astype(np.float64)
        pos += 4 * n
    else:
        n_groups = math.ceil(n / GROUP)
        scales = np.frombuffer(payload, dtype="<f4", count=n_groups, offset=pos).astype(np.float64)
        per_value = np.repeat(scales, GROUP)[:n]
        pos += 4 * n_groups
        if fmt == "fp16":
            values = np.frombuffer(payload, dtype="<f2", count=n, offset=pos).astype(np.float64) * per_value
            pos += 2 * n
        else:
            bits, qmax = _BITS[fmt], _qmax(fmt)
            size = math.ceil(n * bits / 8)
            codes = unpack_bits(payload[pos : pos + size], bits, n).astype(np.int16)
            if codes.max() > 2 * qmax:
                raise ValueError(f"decode: {fmt} code {codes.max()} exceeds {2 * qmax}; corrupt payload")
            values = (codes - qmax) * per_value
            pos += size
    try:
        anchor = payload[pos:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"decode: anchor is not valid UTF-8 ({err})") from err
    return torch.from_numpy(values.astype(np.float32).reshape(M, d)), anchor


def roundtrip(soft: torch.Tensor, anchor: str, fmt: str) -> tuple[torch.Tensor, int]:
    """What B receives after the wire: soft tokens encoded in `fmt` and decoded again (same dtype
    and device as `soft`), and the payload's length in bytes."""
    payload = encode(soft, anchor, fmt)
    restored, _ = decode(payload)
    return restored.to(device=soft.device, dtype=soft.dtype), len(payload)


def wire_summary(payloads_bytes: Sequence[int], question_bytes: Sequence[int]) -> dict[str, float | int | str]:
    """Bytes per payload (mean/min/max) against the question's UTF-8 bytes, with a plain verdict.

    ``wire_over_text`` is mean payload bytes / mean question bytes; above 1 the wire is an
    expansion, not a compression, and the verdict says so."""
    if len(payloads_bytes) != len(question_bytes):
        raise ValueError(f"wire_summary: {len(payloads_bytes)} payloads but {len(question_bytes)} questions")
    if not payloads_bytes:
        raise ValueError("wire_summary: no payloads to summarise")
    if min(question_bytes) <= 0:
        raise ValueError("wire_summary: every question needs at least one UTF-8 byte")
    wire, text = np.asarray(payloads_bytes, dtype=np.float64), np.asarray(question_bytes, dtype=np.float64)
    ratio = wire.mean() / text.mean()
    if ratio > 1:
        verdict = f"expansion ×{ratio:.2f}: the wire is {ratio:.2f} times the question's UTF-8 bytes"
    elif ratio < 1:
        verdict = f"compression ×{1 / ratio:.2f}: the wire is {ratio:.2f} of the question's UTF-8 bytes"
    else:
        verdict = "same size as the question's UTF-8 bytes"
    return {
        "n": len(wire),
        "bytes_mean": float(wire.mean()),
        "bytes_min": int(wire.min()),
        "bytes_max": int(wire.max()),
        "text_bytes_mean": float(text.mean()),
        "text_bytes_min": int(text.min()),
        "text_bytes_max": int(text.max()),
        "wire_over_text": float(ratio),
        "verdict": verdict,
    }

"""The soft-token wire: byte layout, bit packing, payload length against the formula, and the
round-trip error bound of every format."""

import math
import struct

import numpy as np
import pytest
import torch

from studies.bridge.wire import (
    FORMATS,
    GROUP,
    decode,
    encode,
    expected_bytes,
    pack_bits,
    roundtrip,
    unpack_bits,
    wire_summary,
)

QMAX = {"int8": 127, "int6": 31, "int4": 7}


def _soft(M: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(M, d, generator=g) * 3.0


def _with_zero_group_and_partial_tail() -> torch.Tensor:
    """5 × 13 = 65 values: groups [0, 32) random, [32, 64) all zero, [64, 65) a partial group of one."""
    x = _soft(5, 13).reshape(-1)
    x[32:64] = 0.0
    return x.reshape(5, 13)


def test_fp32_round_trip_is_exact():
    x = _with_zero_group_and_partial_tail()
    y, anchor = decode(encode(x, "Answer: ", "fp32"))
    assert anchor == "Answer: "
    assert torch.equal(y, x)


def test_fp16_round_trip_within_fp16_precision_even_beyond_fp16_range():
    x = _with_zero_group_and_partial_tail()
    x[0, 0] = 1e6  # plain fp16 would overflow to inf; the group scale keeps it in range
    y, _ = decode(encode(x, "Answer: ", "fp16"))
    flat, flat_y = x.reshape(-1).double(), y.reshape(-1).double()
    for start in range(0, flat.numel(), GROUP):
        group = flat[start : start + GROUP]
        bound = group.abs().max() * 2.0**-11 + 1e-12  # fp16: 10 stored mantissa bits, values in [-1, 1]
        assert (group - flat_y[start : start + GROUP]).abs().max() <= bound
    assert torch.equal(y.reshape(-1)[32:64], torch.zeros(32))


@pytest.mark.parametrize("fmt", ["int8", "int6", "int4"])
def test_int_round_trip_within_half_a_step_per_group(fmt):
    x = _with_zero_group_and_partial_tail()
    y, anchor = decode(encode(x, "Antwort: ü", fmt))
    assert anchor == "Antwort: ü"
    flat, flat_y = x.reshape(-1).double(), y.reshape(-1).double()
    n_groups = math.ceil(flat.numel() / GROUP)
    assert n_groups == 3
    for g in range(n_groups):
        group, back = flat[g * GROUP : (g + 1) * GROUP], flat_y[g * GROUP : (g + 1) * GROUP]
        scale = group.abs().max() / QMAX[fmt]
        assert (group - back).abs().max() <= scale / 2 * (1 + 1e-6) + 1e-12
    assert torch.equal(y.reshape(-1)[32:64], torch.zeros(32))  # the zero group decodes to exact zeros
    assert y.reshape(-1)[64] == pytest.approx(x.reshape(-1)[64].item(), rel=1e-6)  # a lone value is its own max


def test_coarser_formats_lose_more():
    x = _soft(8, 64, seed=1)
    err = {fmt: (roundtrip(x, "", fmt)[0] - x).abs().max().item() for fmt in FORMATS}
    assert err["fp32"] == 0.0 < err["fp16"] < err["int8"] < err["int6"] < err["int4"]


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("n", [1, 3, 5, 7, 33, 101])
def test_pack_unpack_is_lossless(bits, n):
    codes = np.random.default_rng(bits * 1000 + n).integers(0, 2**bits, size=n)
    buf = pack_bits(codes, bits)
    assert len(buf) == math.ceil(n * bits / 8)
    assert np.array_equal(unpack_bits(buf, bits, n), codes)


def test_int6_packs_four_values_into_three_bytes_by_hand():
    # a=63, b=0, c=42, d=21 LSB-first: byte0 = a | (b&3)<<6, byte1 = b>>2 | (c&15)<<4, byte2 = c>>4 | d<<2
    assert pack_bits(np.array([63, 0, 42, 21]), 6) == bytes([0x3F, 0xA0, 0x56])
    assert pack_bits(np.array([0x1, 0xF]), 4) == bytes([0xF1])


def test_int6_payload_bytes_by_hand():
    x = torch.tensor([[-15.5, 0.0, 15.5, 5.0]])  # scale 15.5 / 31 = 0.5; codes q + 31 = 0, 31, 62, 41
    payload = encode(x, "A", "int6")
    assert payload[:16] == struct.pack("<4sBBHII", b"LBW1", FORMATS.index("int6"), 32, 1, 4, 1)
    assert payload[16:20] == struct.pack("<f", 0.5)
    assert payload[20:23] == bytes([0xC0, 0xE7, 0xA7])
    assert payload[23:] == b"A"
    assert torch.equal(decode(payload)[0], x)


def test_pack_bits_rejects_out_of_range_and_unpack_wrong_length():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 15\]"):
        pack_bits(np.array([16]), 4)
    with pytest.raises(ValueError, match="need 3 bytes, got 2"):
        unpack_bits(b"\x00\x00", 6, 4)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (3, 7), (4, 8), (16, 96)])
def test_payload_length_equals_formula(fmt, shape):
    payload = encode(_soft(*shape), "Answer: ", fmt)
    assert len(payload) == expected_bytes(*shape, fmt, 8)


def test_formula_by_hand():
    assert expected_bytes(1, 5, "int6", 0) == 16 + 4 + 4  # 30 bits → 4 bytes, one partial group
    assert expected_bytes(1, 5, "int4", 0) == 16 + 4 + 3
    assert expected_bytes(2, 32, "fp16", 3) == 16 + 2 * 4 + 128 + 3
    assert expected_bytes(2, 32, "fp32", 3) == 16 + 256 + 3
    # paper scale: 64 soft tokens of Llama width, int4, anchor "Answer: " — about 164 KB
    assert expected_bytes(64, 4096, "int4", 8) == 16 + 8192 * 4 + 131072 + 8 == 163_864


def test_decode_names_the_problem():
    payload = encode(_soft(2, 8), "Answer: ", "int8")
    with pytest.raises(ValueError, match="wrong magic"):
        decode(b"XXXX" + payload[4:])
    with pytest.raises(ValueError, match="truncated payload, 10 bytes"):
        decode(payload[:10])
    with pytest.raises(ValueError, match="truncated payload"):
        decode(payload[:-1])
    with pytest.raises(ValueError, match="overlong payload"):
        decode(payload + b"!")
    with pytest.raises(ValueError, match="unknown format id 9"):
        decode(payload[:4] + bytes([9]) + payload[5:])


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="not one of"):
        encode(_soft(2, 8), "", "int3")
    with pytest.raises(ValueError, match=r"\[M, d\]"):
        encode(torch.zeros(2, 3, 4), "", "int8")
    with pytest.raises(ValueError, match="NaN or inf"):
        encode(torch.tensor([[float("nan")]]), "", "int8")


def test_wire_summary_says_expansion_plainly():
    out = wire_summary([100, 200, 300], [50, 50, 50])
    assert (out["bytes_mean"], out["bytes_min"], out["bytes_max"]) == (200.0, 100, 300)
    assert out["wire_over_text"] == 4.0
    assert out["verdict"].startswith("expansion ×4.00")
    small = wire_summary([10, 20], [40, 40])
    assert small["wire_over_text"] == 0.375
    assert small["verdict"].startswith("compression ×2.67")
    with pytest.raises(ValueError, match="2 payloads but 1 questions"):
        wire_summary([1, 2], [3])

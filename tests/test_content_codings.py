"""The decoders of rewritten pages: a body is complete only when its decoder saw the stream end."""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard

from consentproxy.html import codings

PAGE = (b"<!doctype html><html><head><title>t</title></head><body>" + random.Random(7).randbytes(3000).hex().encode()
        + b"</body></html>")

ENCODERS: dict[bytes, Callable[[bytes], bytes]] = {
    b"gzip": gzip.compress,
    b"deflate": zlib.compress,
    b"br": brotli.compress,
    b"zstd": zstandard.ZstdCompressor().compress,
}


def _decode(coding: bytes, encoded: bytes, pieces: list[int]) -> bytes:
    decoder = codings.decoder(coding)
    out, start = [], 0
    for end in [*pieces, len(encoded)]:
        out.append(decoder.feed(encoded[start:end]))
        start = end
    return b"".join(out) + decoder.finish()


def _cuts(size: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    return sorted(rnd.sample(range(1, size), min(size - 1, rnd.randint(0, 40))))


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_a_whole_stream_decodes_the_same_in_any_pieces(coding: bytes) -> None:
    encoded = ENCODERS[coding](PAGE)
    for seed in range(20):
        assert _decode(coding, encoded, _cuts(len(encoded), seed)) == PAGE


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_every_stream_cut_short_is_an_error_at_its_end(coding: bytes) -> None:
    encoded = ENCODERS[coding](PAGE)
    # every cut in the last 64 bytes (trailers, last blocks) and a spread of earlier ones
    for size in [*range(len(encoded) - 64, len(encoded)), *range(1, len(encoded), 97)]:
        with pytest.raises(codings.CodingError):
            _decode(coding, encoded[:size], _cuts(size, size))


@pytest.mark.parametrize("coding", [b"gzip", b"zstd"])
def test_members_and_frames_that_follow_one_another_are_all_read(coding: bytes) -> None:
    encoded = ENCODERS[coding](PAGE[:1000]) + ENCODERS[coding](PAGE[1000:])
    for seed in range(10):
        assert _decode(coding, encoded, _cuts(len(encoded), seed)) == PAGE
    # ... and a second one cut short is an error too
    with pytest.raises(codings.CodingError):
        _decode(coding, encoded[:-5], [])


@pytest.mark.parametrize("coding", [b"gzip", b"deflate", b"zstd"])
def test_bytes_after_the_end_that_start_no_stream_are_ignored_as_browsers_do(coding: bytes) -> None:
    encoded = ENCODERS[coding](PAGE) + b"\0\0\r\ntrailing junk"
    for seed in range(10):
        assert _decode(coding, encoded, _cuts(len(encoded), seed)) == PAGE


def test_bytes_after_a_brotli_stream_are_an_error_as_in_browsers() -> None:
    with pytest.raises(codings.CodingError):
        _decode(b"br", ENCODERS[b"br"](PAGE) + b"junk", [])


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_an_empty_body_is_complete(coding: bytes) -> None:
    assert codings.decoder(coding).finish() == b""

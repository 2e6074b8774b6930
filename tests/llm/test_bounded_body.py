"""Reply bodies are decoded under a bound on their decoded size (personalrewardbench/llm/bounded_body.py):
a small compressed body that inflates past its reply's byte limit fails that request, for chat answers
and for the server's /v1/models, before the memory fills. Bombs are built here with zlib/gzip."""

from __future__ import annotations

import gzip
import json
import resource
import zlib

import pytest

from personalrewardbench.llm import make_llm
from personalrewardbench.llm.base import GenerationParams
from personalrewardbench.llm.bounded_body import BadEncoding, BodyTooLarge, BoundedBody

from .red_server import Reply, Scripted, chat_answer
from .test_red_team_servers import FAST, judge, server


def _read(encoding: str | None, raw: bytes, limit: int, chunk: int = 1000) -> bytes:
    body = BoundedBody(encoding, limit)
    for i in range(0, len(raw), chunk):
        body.feed(raw[i:i + chunk])
    return body.finish()


def _deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def test_each_supported_encoding_decodes_to_the_same_bytes() -> None:
    data = json.dumps(chat_answer(None, "First " * 200)).encode()
    for enc, raw in ((None, data), ("identity", data), ("gzip", gzip.compress(data)), ("x-gzip", gzip.compress(data)),
                     ("deflate", zlib.compress(data)), ("deflate", _deflate_raw(data)), ("GZIP ", gzip.compress(data))):
        assert _read(enc, raw, len(data)) == data, enc


def test_a_decoded_size_past_the_bound_stops_within_it() -> None:
    data = b"0" * 50_000_000  # 50 MB of zeros: ~50 KB gzipped
    raw = gzip.compress(data)
    assert len(raw) < 100_000
    body = BoundedBody("gzip", 1_000_000)
    with pytest.raises(BodyTooLarge):
        for i in range(0, len(raw), 65536):
            body.feed(raw[i:i + 65536])
            assert len(body.data) <= 1_000_001  # never more than the bound + 1 byte held
    assert _read("gzip", gzip.compress(b"x" * 1000), 1000) == b"x" * 1000  # exactly the bound is fine
    with pytest.raises(BodyTooLarge):
        _read("gzip", gzip.compress(b"x" * 1001), 1000)
    with pytest.raises(BodyTooLarge):
        _read(None, b"x" * 1001, 1000)


@pytest.mark.parametrize("encoding", ["gzip, gzip", "br", "zstd", "compress", "gzip, br"])
def test_layers_and_other_encodings_are_refused(encoding: str) -> None:
    with pytest.raises(BadEncoding):
        BoundedBody(encoding, 1000)


def test_corrupt_compressed_data_is_refused() -> None:
    with pytest.raises(BadEncoding, match="corrupt"):
        _read("gzip", b"\x1f\x8b\x08\x00garbage-not-deflate" * 10, 10_000)


def test_the_model_list_is_bounded_too() -> None:
    import httpx

    from personalrewardbench.llm.openai_server import fetch_json

    bomb = _double_gzip_bomb(128 << 20)
    with Scripted(lambda req: Reply(body=bomb, headers={"Content-Encoding": "gzip, gzip"})) as s, \
            httpx.Client() as client:
        assert fetch_json(client, "GET", f"{s.url}/models", 30.0) == (200, None)
        single = gzip.compress(json.dumps({"data": [{"id": "m"}]}).encode())
    with Scripted(lambda req: Reply(body=single, headers={"Content-Encoding": "gzip"})) as s, httpx.Client() as client:
        assert fetch_json(client, "GET", f"{s.url}/models", 30.0) == (200, {"data": [{"id": "m"}]})
        with s.lock:
            assert [r["accept_encoding"] for r in s.log] == ["identity"]


def _double_gzip_bomb(size: int) -> bytes:
    """``size`` bytes of zeros gzipped twice (the second layer shrinks the first's repetitive output)."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [inner.compress(b"\0" * (1 << 20)) for _ in range(size >> 20)] + [inner.flush()]
    return gzip.compress(b"".join(parts), 9)


def test_a_compression_bomb_fails_its_request_and_never_inflates() -> None:
    bomb = _double_gzip_bomb(256 << 20)  # 256 MiB once inflated twice
    assert len(bomb) < 400_000
    single = gzip.compress(b"\0" * (64 << 20))  # one layer, 64 MiB inflated

    def special(req, text):
        if "Q0" in text:
            return Reply(body=bomb, headers={"Content-Encoding": "gzip, gzip"})
        if "Q1" in text:
            return Reply(body=single, headers={"Content-Encoding": "gzip"})
        if "Q2" in text:
            return Reply(body=gzip.compress(json.dumps(chat_answer(None, "Second")).encode()),
                         headers={"Content-Encoding": "gzip"})
        return None

    with Scripted(server(special)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        llm.generate([judge(3)], GenerationParams(max_tokens=8))  # warm: imports, token counter, client
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        out = llm.generate([judge(i) for i in range(4)], GenerationParams(max_tokens=8))
        with s.lock:
            asked = {r["accept_encoding"] for r in s.log}
    assert [c.finish_reason for c in out] == ["error", "error", "stop", "stop"]
    assert out[2].text == "Second"  # one honest gzip layer is decoded
    assert llm.usage.failed_requests == 2 and llm.usage.retries == 0
    assert all(c.text == "" for c in out[:2])
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 48, grown_mib  # neither the 256 MiB nor the 64 MiB body was inflated
    assert asked == {"identity"}  # every request (models, tokenize, chats) asks for the body as is

"""Reading an HTTP body under a bound on its *decoded* size.

httpx decodes ``Content-Encoding`` itself (layer upon layer: ``gzip, gzip``), one whole network chunk
at a time, before a caller can count anything: a 2 KB doubly-gzipped reply inflates to 1 GiB in one
step. So the backend sends ``Accept-Encoding: identity`` (:data:`REQUEST_HEADERS`), reads the raw
bytes (``iter_raw``) and decodes here: no encoding or ``identity`` as is; one layer of ``gzip`` or
``deflate`` (zlib or raw) with :mod:`zlib`, asking for at most the bytes still allowed; anything else
(two layers, ``br``, ``zstd``, unknown names) is refused, since a server told ``identity`` had no
reason to send it.
"""

from __future__ import annotations

import zlib

#: Headers every request to an OpenAI-compatible server carries: ask for the body as is.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}


class BodyTooLarge(Exception):
    """The decoded body passed its bound."""


class BadEncoding(Exception):
    """A ``Content-Encoding`` this reader does not decode (several layers, or not gzip/deflate)."""


class BoundedBody:
    """Accumulates a body's raw chunks (:meth:`feed`, then :meth:`finish`), decoded, at most ``limit`` bytes.

    ``content_encoding``: the response's ``Content-Encoding`` header (None or empty: none).
    Raises :class:`BadEncoding` at construction for an encoding it does not decode,
    :class:`BodyTooLarge` as soon as the decoded size passes ``limit``, and :class:`BadEncoding`
    when the compressed data is corrupt.
    """

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        layers = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
        layers = [e for e in layers if e != "identity"]
        if len(layers) > 1:
            raise BadEncoding(f"Content-Encoding {content_encoding[:80]!r}: several layers of encoding")
        self.limit = limit
        self.data = bytearray()
        self._z = None
        if layers:
            if layers[0] in ("gzip", "x-gzip"):
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif layers[0] == "deflate":
                self._z = _DeflateEither()
            else:
                raise BadEncoding(f"Content-Encoding {layers[0][:40]!r} is not decoded here (asked for identity)")

    def feed(self, raw: bytes) -> None:
        """Add one raw chunk; raises :class:`BodyTooLarge` past the bound."""
        if self._z is None:
            self._add(raw)
            return
        room = self.limit - len(self.data) + 1
        try:
            out = self._z.decompress(raw, room)
        except zlib.error as exc:
            raise BadEncoding(f"the compressed body is corrupt ({exc})") from exc
        self._add(out)
        if self._z.unconsumed_tail:  # more output waits than the bound allows
            raise BodyTooLarge(f"decoded body passed {self.limit:,} bytes")

    def finish(self) -> bytes:
        """The decoded body; raises :class:`BodyTooLarge` if the last of it passes the bound."""
        if self._z is not None:
            try:
                self._add(self._z.flush(self.limit - len(self.data) + 1))
            except zlib.error as exc:
                raise BadEncoding(f"the compressed body is corrupt ({exc})") from exc
        return bytes(self.data)

    def _add(self, out: bytes) -> None:
        self.data += out
        if len(self.data) > self.limit:
            raise BodyTooLarge(f"decoded body passed {self.limit:,} bytes")


class _DeflateEither:
    """HTTP ``deflate``: zlib-wrapped as RFC 9110 says, or raw deflate as some servers send it."""

    def __init__(self) -> None:
        self._z: zlib._Decompress | None = None

    def decompress(self, raw: bytes, max_length: int) -> bytes:
        if self._z is None:
            self._z = zlib.decompressobj(zlib.MAX_WBITS if raw[:1] and raw[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        return self._z.decompress(raw, max_length)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._z.unconsumed_tail if self._z is not None else b""

    def flush(self, length: int) -> bytes:
        return self._z.flush(length) if self._z is not None else b""

"""A fake OpenAI-compatible chat server on 127.0.0.1 that records every request (standard library only).

It answers a pairwise judge in the format each side parses and decides First or
Second from what both sides show alike: the two responses and the number of
worked examples before the query. Without at least two worked examples the
verdict is a hash of the first response's text; with them it picks the response
that reads "short, direct" (as if the examples had taught it the user's taste).
So the SynthesizeMe reference (DSPy's ChatAdapter fields ``[[ ## preference ## ]]``)
and this project's judge (``Preference: [[First]]``) get the same verdict for the
same presentation. Persona writer requests get a fixed persona in each format.

    server = RecordingServer(); server.start(); ... server.records; server.stop()

``POST /__mark`` with ``{"label": ...}`` appends a marker to the record (the
reference driver brackets its candidate evaluations with them).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-judge"
CONTEXT = 131072
_REF_PAIR = re.compile(r"\[\[ ## first_completion ## \]\]\n(.*?)\n\n\[\[ ## second_completion ## \]\]\n(.*?)"
                       r"(?:\n\n\[\[ ##|\n\nRespond|\Z)", re.S)
_OUR_PAIR = re.compile(r"## First response\n(.*?)\n\n## Second response\n(.*?)\n\n\S", re.S)
_ROLE_PREFIX = re.compile(r"^\[\w+\]: ")


def verdict(first: str, second: str, n_demos: int = 0) -> str:
    """First or Second (see the module doc); role tags and outer spaces are removed first."""
    text = _ROLE_PREFIX.sub("", first.strip()).strip()
    if n_demos >= 2:
        return "First" if "short, direct" in text else "Second"
    return "First" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2 == 0 else "Second"


def answer(messages: list[dict[str, Any]]) -> str:
    last = str(messages[-1].get("content", ""))
    n_demos = sum(m.get("role") == "assistant" for m in messages)
    if "[[ ## past_judgements ## ]]" in last:
        return ("[[ ## reasoning ## ]]\nThe picks share a taste for clear answers.\n\n"
                "[[ ## synthesized_persona ## ]]\nA reader who values clear, direct answers.\n\n[[ ## completed ## ]]")
    if "Now write the persona." in last:
        return "Reasoning: The picks share a taste for clear answers.\nPersona: A reader who values clear, direct answers."
    m = _REF_PAIR.search(last)
    if m:
        return (f"[[ ## reasoning ## ]]\nPerhaps the judge likes this style.\n\n[[ ## preference ## ]]\n"
                f"{verdict(m.group(1), m.group(2), n_demos)}\n\n[[ ## completed ## ]]")
    m = _OUR_PAIR.search(last)
    if m:
        return f"Reasoning: Perhaps the judge likes this style.\nPreference: [[{verdict(m.group(1), m.group(2), n_demos)}]]"
    return "I cannot tell."


class RecordingServer:
    def __init__(self, port: int = 0) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send({"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": CONTEXT}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.endswith("/__mark"):
                    with outer._lock:
                        outer.records.append({"mark": body.get("label")})
                    return self._send({"ok": True})
                if not self.path.rstrip("/").endswith("/chat/completions"):  # e.g. vLLM's /tokenize: not served
                    data = b'{"detail": "Not Found"}'
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                text = answer(body.get("messages") or [])
                with outer._lock:
                    outer.records.append({"request": body})
                n_prompt = sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages") or [])
                self._send({"id": "x", "object": "chat.completion", "model": MODEL, "created": 0,
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(text) // 4,
                                      "total_tokens": n_prompt + len(text) // 4}})

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def take(self) -> list[dict[str, Any]]:
        """The records so far, and a fresh empty log."""
        with self._lock:
            out, self.records = self.records, []
        return out

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

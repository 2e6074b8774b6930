"""SynthesizeMe's settings, checked once.

Defaults reproduce the reference (SALT-NLP/SynthesizeMe, PyPI ``synthesizeme``
0.0.11a1 under DSPy 2.6) as it actually runs, measured with a recording fake LM
(see README.md, "Protocol"). The behaviour the reference's code intends but does
not deliver, and this project's robustness changes, are settings with other values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from personalrewardbench.methods import MethodError

PERSONA_SOURCES = ("selected", "verified")
VALIDATION_ORDERS = ("flip", "both")
CANDIDATE_RNGS = ("reference", "seeded")


@dataclass(frozen=True)
class Settings:
    # Ablations: personas + demos (both True), just personas, just demos.
    use_persona: bool = True
    use_demos: bool = True
    # Search (reference defaults).
    max_labeled_demos: int = 4  # raw labeled demos fill a demo set up to this many
    max_bootstrapped_demos: int = -1  # -1: no limit (all verified traces of the user)
    num_candidates: int = 10  # seeded shuffles, after the labeled-only and unshuffled candidates
    stop_at_score: float = 80.0  # percent validation accuracy that ends a user's search
    train_val_ratio: float = 0.7  # train share when a user has no validation pairs
    rebootstrap_with_persona: bool = True  # re-verify traces with the persona judge before search 2
    # As the reference runs: raw labeled demos never reach a judge prompt (DSPy drops them), so the
    # teacher is zero-shot and `labeled-only` is the zero-shot judge. True: they are shown (intended).
    labeled_demos_in_prompts: bool = False
    validation_orders: str = "flip"  # "flip": each validation pair once, in its flip order (reference)
    candidate_rng: str = "reference"  # "reference": Random(k) shuffles as the reference; "seeded": run seed
    score_every_candidate: bool = True  # the reference scores all candidates, then scans; False: stop early
    # Persona writer ("Theta"): "reference" (the program in the installed synthesizeme package),
    # "reference:llama8b"/"reference:llama3b", "builtin" (our zero-shot instruction), or a program file.
    persona_program: str = "reference"
    persona_instruction: str | None = None  # replaces the program's (or the built-in) instruction
    persona_source: str = "selected"  # "selected": demos chosen by search 1 (reference); "verified": all traces
    # Generation.
    max_tries: int = 4  # tries per judgment (identical requests unless retry_temperature is set)
    temperature: float = 0.0
    retry_temperature: float | None = None  # None: identical retries (reference); a number: re-sampled retries
    max_judge_tokens: int = 8192  # cap on a judge reply (reasoning + answer); the reference's max_tokens
    max_persona_tokens: int = 8192  # cap on a persona writer reply
    context_margin: int = 8  # tokens kept free besides the reply cap
    # Execution.
    batch_across_users: bool = True  # False: the user-by-user loop (same calls, for comparison)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> MethodError:
            return MethodError(f"synthesizeme: setting {name}={getattr(self, name)!r} {why}")

        if not (self.use_persona or self.use_demos):
            raise MethodError("synthesizeme: use_persona and use_demos are both false; enable at least one")
        if self.max_labeled_demos < 0:
            raise bad("max_labeled_demos", "must be >= 0")
        if self.max_bootstrapped_demos < -1 or self.max_bootstrapped_demos == 0:
            raise bad("max_bootstrapped_demos", "must be -1 (no limit) or >= 1")
        if self.num_candidates < 0:
            raise bad("num_candidates", "must be >= 0")
        if not 0 < self.train_val_ratio < 1:
            raise bad("train_val_ratio", "must be between 0 and 1")
        if not 0 <= self.stop_at_score <= 100:
            raise bad("stop_at_score", "must be a percentage between 0 and 100")
        if self.temperature < 0:
            raise bad("temperature", "must be >= 0")
        if self.context_margin < 0:
            raise bad("context_margin", "must be >= 0")
        if self.max_tries < 1:
            raise bad("max_tries", "must be >= 1")
        if self.retry_temperature is not None and self.retry_temperature < 0:
            raise bad("retry_temperature", "must be >= 0, or unset for identical retries")
        for name in ("max_judge_tokens", "max_persona_tokens"):
            if getattr(self, name) < 8:
                raise bad(name, "must be >= 8")
        for name, allowed in (("persona_source", PERSONA_SOURCES), ("validation_orders", VALIDATION_ORDERS),
                              ("candidate_rng", CANDIDATE_RNGS)):
            if getattr(self, name) not in allowed:
                raise bad(name, f"must be one of {allowed}")
        if not str(self.persona_program).strip():
            raise bad("persona_program", "is empty; use 'reference', 'builtin' or the path of a program file")
        if self.persona_instruction is not None and not self.persona_instruction.strip():
            raise bad("persona_instruction", "is empty; leave it out to use the program's instruction")

    def as_dict(self) -> dict:
        return asdict(self)

"""SynthesizeMe's settings, with the reference code's defaults, checked once."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from personalrewardbench.methods import MethodError

PERSONA_SOURCES = ("selected", "verified")


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
    # Persona writer ("Theta"): instruction text (None = the built-in wording) and its input.
    persona_instruction: str | None = None
    persona_source: str = "selected"  # "selected": demos chosen by search 1 (reference); "verified": all traces
    # Generation (robustness).
    max_tries: int = 4  # tries per judgment before it counts as failed
    temperature: float = 0.0
    retry_temperature: float = 0.7
    max_judge_tokens: int = 256  # cap on a judge reply (reasoning + answer)
    max_persona_tokens: int = 384  # cap on a persona writer reply
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
        if self.max_tries < 1:
            raise bad("max_tries", "must be >= 1")
        for name in ("max_judge_tokens", "max_persona_tokens"):
            if getattr(self, name) < 8:
                raise bad(name, "must be >= 8")
        if self.persona_source not in PERSONA_SOURCES:
            raise bad("persona_source", f"must be one of {PERSONA_SOURCES}")
        if self.persona_instruction is not None and not self.persona_instruction.strip():
            raise bad("persona_instruction", "is empty; leave it out to use the built-in wording")

    def as_dict(self) -> dict:
        return asdict(self)

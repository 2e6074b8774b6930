"""Real, sealed runs for the leaderboard tests: baselines and small rule-based methods evaluated by the
harness on a built benchmark folder and on the synthetic sample, so every row the board shows is verified."""

from __future__ import annotations

import hashlib
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from personalrewardbench.data import save_benchmark
from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, content_hash
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import Method, MethodEnv, load_method

HOSTILE_NAME = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
MINI = "mini-arena"
LONG_MODEL = "transformers:HuggingFaceTB/SmolLM2-135M-Instruct@9d1c2b6e0f3a4c5d8e7f6a5b4c3d2e1f00112233"


@pytest.fixture(scope="package", autouse=True)
def _isolated_keys_and_caches(tmp_path_factory: pytest.TempPathFactory):
    """A test seal key and a private cache folder for every test in this package."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRB_SEAL_KEY", "leaderboard-tests-" + "k" * 32)
        mp.setenv("PRB_CACHE_DIR", str(tmp_path_factory.mktemp("prb-cache")))
        yield


def mini_benchmark(n_users: int = 16, n_test: int = 6, name: str = MINI) -> Benchmark:
    """Users with a planted taste: even users prefer the longer answer, odd users the shorter."""
    rng = random.Random(3)
    pairs = []
    for u in range(n_users):
        uid = f"user{u:02d}"
        for k in range(4 + 2 + n_test):
            split = "train" if k < 4 else "val" if k < 6 else "test"
            short = f"Answer {k} of {uid}."
            long = short + " " + " ".join(rng.choice(["it", "also", "covers", "detail", "context"])
                                          for _ in range(rng.randint(4, 12)))
            chosen, rejected = (long, short) if u % 2 == 0 else (short, long)
            pairs.append(PreferencePair(pair_id=f"{uid}-p{k}", user_id=uid, dataset=name,
                                        context=(Message("user", f"Question {k} from {uid}?"),),
                                        chosen=chosen, rejected=rejected, split=split, meta={}))
    profiles = {f"user{u:02d}": None for u in range(n_users)}
    manifest = Manifest(name=name, sources=({"id": "leaderboard-tests", "kind": "test"},), filters={}, seed=0,
                        counts={"users": n_users, "pairs": len(pairs)}, content_hash=content_hash(pairs, profiles),
                        synthetic=False)
    return Benchmark(pairs=tuple(pairs), profiles=profiles, manifest=manifest)


class PersonalLength(Method):
    """Learns from each user's train/val pairs whether they prefer longer answers; ``noise`` flips a seeded
    share of its answers (so methods of different skill can be made)."""

    capabilities = frozenset({"personalized", "artifacts"})

    def __init__(self, label: str = "personal-length", noise: float = 0.0, persona: str = "",
                 base_model: str | None = None) -> None:
        self.label, self.noise, self.persona, self.base_model = label, noise, persona, base_model
        self.name = label  # type: ignore[misc]
        self.likes_long: dict[str, bool] = {}

    def fit(self, histories):
        for h in histories:
            votes = [len(p.chosen) > len(p.rejected) for p in (*h.train, *h.val)]
            self.likes_long[h.user_id] = sum(votes) * 2 >= len(votes)

    def predict(self, queries):
        out = []
        for q in queries:
            first_longer = len(q.first) > len(q.second)
            p = 0.8 if first_longer == self.likes_long.get(q.user_id, True) else 0.2
            flip = int.from_bytes(hashlib.sha256(f"{self.label}{q.query_id}".encode()).digest()[:4], "big") / 2**32
            out.append(1 - p if flip < self.noise else p)
        return out

    def artifacts(self):
        return {u: (self.persona or "Likes {}.").format("long answers" if v else "short answers") + f" ({u})"
                for u, v in sorted(self.likes_long.items())}


class NeedsProfile(Method):
    name = "demographics-test"
    capabilities = frozenset({"profile"})

    def predict(self, queries):
        return [0.5] * len(queries)


def evaluate_into(root: Path, method: Method, bench: Benchmark, *, spec: str | None = None, seed: int = 0,
                  n_users: int | None = None, shard: tuple[int, int] | None = None, tag: str = "") -> Path:
    """Run the harness (fit, predict, score, seal) into ``root/<dataset>/<method>/<run>``."""
    folder_name = hashlib.sha256(method.name.encode()).hexdigest()[:10] if "/" in method.name or "<" in method.name \
        else method.name
    run = root / bench.name / folder_name / f"s{seed}{'-u' + str(n_users) if n_users else ''}" \
                                            f"{'-shard' + str(shard[0]) if shard else ''}{tag}"
    run_evaluation(method, bench, MethodEnv(seed=seed), run, n_users=n_users, shard=shard, show_progress=False,
                   dataset_spec=spec, resamples=500)
    return run


def write_standard_results(root: Path, methods: Sequence[str] = ()) -> tuple[Path, Path]:
    """(results root, built benchmark folder): baselines and rule methods on a built benchmark folder and on
    the synthetic sample, one not-applicable row, personas, a 1-user subset run."""
    from personalrewardbench.data import load_benchmark

    bench_dir = save_benchmark(mini_benchmark(), root / "bench" / MINI)
    mini = mini_benchmark()
    synth = load_benchmark("synthetic")
    results = root / "results"
    for bench, spec in ((mini, str(bench_dir)), (synth, "synthetic")):
        for name in ("length", "random", "position"):
            evaluate_into(results, load_method(name), bench, spec=spec)
        evaluate_into(results, PersonalLength(persona="Prefers {} & <b>bold</b> claims", base_model=LONG_MODEL),
                      bench, spec=spec)
        evaluate_into(results, NeedsProfile(), bench, spec=spec)
    evaluate_into(results, PersonalLength("personal-length", noise=0.35, base_model=LONG_MODEL), mini,
                  spec=str(bench_dir), tag="-noisy")
    evaluate_into(results, load_method("length"), mini, spec=str(bench_dir), n_users=1)
    return results, bench_dir


@pytest.fixture(scope="package")
def standard_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(results root, benchmark folder), made once per package; tests copy before changing anything."""
    return write_standard_results(tmp_path_factory.mktemp("standard"))


@pytest.fixture
def results_dir(standard_results: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the standard results (same recorded benchmark path), free to change."""
    return copy_tree(standard_results[0], tmp_path / "results")


@pytest.fixture(scope="package")
def standard_site(standard_results: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(results root, built site) of the standard results, built once; read-only."""
    from personalrewardbench.leaderboard.build import build_site

    site = tmp_path_factory.mktemp("standard-site") / "site"
    build_site([standard_results[0]], site, include_reported=True)
    return standard_results[0], site


@pytest.fixture(scope="package")
def hostile_site(standard_results: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The standard results plus one real run whose every text field is hostile; built once."""
    from personalrewardbench.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("hostile")
    results = copy_tree(standard_results[0], root / "results")
    bench_dir = standard_results[1]
    evaluate_into(results, PersonalLength(HOSTILE_NAME, noise=0.1, persona=HOSTILE_NAME + " {}",
                                          base_model="=cmd|' /C calc'!A0 $x$ </pre><script>alert(3)</script>"),
                  mini_benchmark(), spec=str(bench_dir))
    build_site([results], root / "site", include_reported=False)
    return results, root / "site"


@pytest.fixture
def artifacts_dir(repo_root: Path) -> Path:
    out = repo_root / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst

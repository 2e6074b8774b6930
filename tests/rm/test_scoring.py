"""Formatting, truncation and batched scoring with the real MiniLM."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.methods import MethodError
from personalrewardbench.rewardmodel.formatting import PERSONA_HEADER, RMItem, encode_item
from personalrewardbench.rewardmodel.models import load_reward_model, model_identity, resolve_device
from personalrewardbench.rewardmodel.scoring import RewardScorer, length_batches, sigmoid_diff

CTX = (Message("user", "What is a good name for a cat?"),)


def test_pair_encoding_keeps_response_and_latest_turn_when_truncating(minilm):
    tok, _ = minilm
    old = tuple(Message("user" if i % 2 == 0 else "assistant", f"old turn {i} " + "filler " * 40) for i in range(6))
    ctx = old + (Message("user", "LATEST question about zebras?"),)
    enc = encode_item(tok, RMItem(ctx, "The answer mentions giraffes."), max_length=64)
    text = tok.decode(enc["input_ids"])
    assert len(enc["input_ids"]) <= 64
    assert "zebras" in text and "giraffes" in text
    assert "old turn 0" not in text  # whole old turns went first
    assert set(enc) >= {"input_ids", "attention_mask"}


def test_chat_template_path_puts_persona_in_a_system_turn(minilm):
    tok = copy.deepcopy(minilm[0])
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    enc = encode_item(tok, RMItem(CTX, "Whiskers.", persona="Likes short answers."), max_length=128)
    text = tok.decode(enc["input_ids"])
    assert text.index("< system >") < text.index("< user >") < text.index("< assistant >")
    assert "likes short answers" in text
    # A template that rejects system turns gets the persona folded into the first user turn.
    tok2 = copy.deepcopy(minilm[0])
    tok2.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                          "{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    text2 = tok2.decode(encode_item(tok2, RMItem(CTX, "Whiskers.", persona="Likes short answers."), 128)["input_ids"])
    assert "system" not in text2 and PERSONA_HEADER.lower()[:20] in text2


def test_batched_scores_equal_one_at_a_time_and_duplicates_scored_once(minilm):
    tok, model = minilm
    items = [RMItem(CTX, r) for r in ["Whiskers.", "Call it Mr. Fluffington the Third, a grand name.", "Tom.",
                                      "Whiskers."]]
    batched = RewardScorer(tok, model, batch_size=8)
    single = RewardScorer(tok, model, batch_size=1)
    a, b = batched.score(items), single.score(items)
    np.testing.assert_allclose(a, b, atol=1e-5)  # padding must not change a score
    assert a[0] == a[3]
    assert batched.n_scored == 3
    p = batched.pair_probabilities(items[:2], items[1:3])
    assert all(0.0 <= x <= 1.0 for x in p)


def test_probabilities_are_antisymmetric():
    r1, r2 = np.array([0.3, -2.0, 40.0]), np.array([1.1, 5.0, -40.0])
    np.testing.assert_allclose(sigmoid_diff(r1, r2) + sigmoid_diff(r2, r1), 1.0)
    assert sigmoid_diff(np.array([800.0]), np.array([-800.0]))[0] == 1.0


def test_length_batches_cover_everything_once():
    lengths = [5, 50, 7, 49, 12, 3, 30]
    batches = list(length_batches(lengths, 3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)


def test_untrained_head_is_seeded_and_identity_is_stable():
    _, m1 = load_reward_model(None, seed=3)
    _, m2 = load_reward_model(None, seed=3)
    assert all((p1 == p2).all() for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True))
    assert model_identity(None) == model_identity("embedded-minilm")
    assert model_identity(None).startswith("embedded-minilm@")


def test_clear_errors_for_bad_model_and_device(tmp_path):
    with pytest.raises(MethodError, match="could not load reward model"):
        load_reward_model(str(tmp_path / "no-such-model"))
    with pytest.raises(MethodError, match="unknown device"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(MethodError, match="no CUDA"):
            resolve_device("cuda")


def test_any_local_sequence_classification_folder_loads_by_path(minilm, tmp_path):
    tok, model = minilm
    folder = tmp_path / "my-rm"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    tok2, model2 = load_reward_model(str(folder))
    items = [RMItem(CTX, "Whiskers."), RMItem(CTX, "Tom.")]
    np.testing.assert_allclose(RewardScorer(tok2, model2).score(items), RewardScorer(tok, model).score(items),
                               atol=1e-6)
    ident = model_identity(str(folder))
    assert ident.startswith("local:my-rm@") and ident != model_identity(None)

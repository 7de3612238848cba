"""The bridge study's models: tiny causal LM, translator, per-mode inputs, translator training.

A toy copy task stands in for the real data: A and B read the same strings through different
vocabularies (A char ids 2.., B reversed ids 5..) and answer by repeating the question."""

import random

import pytest
import torch

from studies.bridge.bridged import Bridge, Decoding, Example, derangement, pad_left
from studies.bridge.lm import TinyLM, ban_repeated_ngrams, generate, penalise_repeats, train_lm
from studies.bridge.train import StateCache, TrainConfig, info_nce, info_nce_weight, train_translator
from studies.bridge.translator import Translator

ALPHABET = "abcdefgh="
PAD, EOS = 0, 1


def encode_a(text: str) -> list[int]:
    return [2 + ALPHABET.index(c) for c in text]


def encode_b(text: str) -> list[int]:
    return [5 + len(ALPHABET) - 1 - ALPHABET.index(c) for c in text]


VOCAB_A, VOCAB_B = 2 + len(ALPHABET), 5 + len(ALPHABET) + 3


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def copy_examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = "".join(rng.choice(ALPHABET[:-1]) for _ in range(3))
        out.append(Example(tuple(encode_a(q)), tuple(encode_b(q)), (*encode_a(q), EOS), (*encode_b(q), EOS)))
    return out


def lm_batches(examples: list[Example], side: str, size: int) -> list[torch.Tensor]:
    anchor = encode_a("=") if side == "a" else encode_b("=")
    seqs = [
        list(e.a_question if side == "a" else e.b_question) + anchor + list(e.a_answer if side == "a" else e.b_answer)
        for e in examples
    ]
    return [torch.tensor(seqs[i : i + size]) for i in range(0, len(seqs), size)]


def make_bridge(lm_a: TinyLM, lm_b: TinyLM, seed: int = 0) -> Bridge:
    torch.manual_seed(seed)
    translator = Translator(lm_a.d_model, lm_b.d_model, 4, 16, 2, 1, target_rms=lm_b.embedding_rms())
    return Bridge(lm_a, lm_b, translator, encode_a, encode_b, EOS, EOS, anchor="=")


@pytest.fixture(scope="module")
def tiny_lms():
    """Two TinyLMs (d 16 / 24, different vocabularies) trained 100 steps on the copy task."""
    torch.set_num_threads(1)
    examples = copy_examples(320, seed=1)
    torch.manual_seed(0)
    lm_a, lm_b = TinyLM(VOCAB_A, 16, 2, 2, 32), TinyLM(VOCAB_B, 24, 2, 2, 32)
    hist_a = train_lm(lm_a, lm_batches(examples, "a", 32), steps=100, lr=3e-3, seed=0, pad_id=PAD, warmup=10)
    hist_b = train_lm(lm_b, lm_batches(examples, "b", 32), steps=100, lr=3e-3, seed=0, pad_id=PAD, warmup=10)
    print(f"LM A loss {hist_a[0]:.3f} -> {hist_a[-1]:.3f}; LM B loss {hist_b[0]:.3f} -> {hist_b[-1]:.3f}")
    return lm_a, lm_b, hist_a, hist_b


# --- TinyLM -------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True])
def test_lm_is_causal_changing_token_t_plus_1_leaves_logits_up_to_t(padded):
    torch.manual_seed(0)
    lm = TinyLM(12, 16, 2, 2, 16).eval()
    ids = torch.randint(2, 12, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool) if padded else None
    for t in range(7):
        changed = ids.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1 - 2) % 10 + 2
        before, after = lm(ids, pad_mask=mask), lm(changed, pad_mask=mask)
        assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
        assert not torch.allclose(before[:, t + 1], after[:, t + 1], atol=1e-4)


def test_left_padded_row_computes_what_it_computes_unpadded():
    torch.manual_seed(0)
    lm = TinyLM(12, 16, 2, 2, 16).eval()
    short, long = [3, 4, 5], [6, 7, 8, 9, 10]
    ids, mask = pad_left([short, long])
    logits, hidden = lm(ids, pad_mask=mask, return_hidden=True)
    alone_logits, alone_hidden = lm(torch.tensor([short]), return_hidden=True)
    assert torch.allclose(logits[0, 2:], alone_logits[0], atol=1e-5)
    assert torch.allclose(hidden[0, 2:], alone_hidden[0], atol=1e-5)
    assert hidden.shape == (2, 5, 16)


def test_embedding_rms_is_the_rms_of_the_token_table():
    lm = TinyLM(5, 4, 1, 1, 8)
    with torch.no_grad():
        lm.embed.weight.copy_(torch.tensor([[3.0, -3.0, 3.0, -3.0]] * 4 + [[0.0] * 4]))
    assert lm.embedding_rms() == pytest.approx((4 * 4 * 9 / 20) ** 0.5)


def test_train_lm_takes_a_list_an_iterator_or_a_callable_of_batches_alike():
    batch = torch.tensor([[2, 3, 4, 5, 1, 0], [6, 7, 8, 1, 0, 0]])
    histories = []
    for source in ([batch], iter([batch] * 5), lambda _step: batch):
        torch.manual_seed(0)
        histories.append(train_lm(TinyLM(12, 16, 1, 2, 8), source, steps=5, lr=1e-2, pad_id=0))
    assert histories[0] == histories[1] == histories[2]
    assert histories[0][-1] < histories[0][0]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_generated_tokens():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    out = penalise_repeats(logits, torch.tensor([[0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.5]]
    assert torch.equal(penalise_repeats(logits, torch.tensor([[0, 1]]), 1.0), logits)


def test_no_repeat_trigram_bans_only_the_token_completing_a_seen_trigram():
    logits = torch.zeros(2, 6)
    generated = torch.tensor([[1, 2, 3, 1, 2], [1, 2, 3, 4, 5]])
    out = ban_repeated_ngrams(logits, generated, 3)
    assert out[0].tolist() == [0, 0, 0, float("-inf"), 0, 0]
    assert out[1].tolist() == [0.0] * 6


def test_generate_is_greedy_stepwise_argmax_and_fills_after_eos():
    torch.manual_seed(0)
    lm = TinyLM(12, 16, 2, 2, 16).eval()
    prompt = torch.tensor([[3, 4, 5], [6, 7, 8]])
    seq = prompt.clone()
    for _ in range(4):
        seq = torch.cat([seq, lm(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generate(lm, prompt, max_new=4), seq[:, 3:])
    eos = int(seq[0, 3])  # row 0's first token: that row must stop at once
    out = generate(lm, prompt, max_new=4, eos_id=eos)
    assert out[0].tolist() == [eos] * 4
    assert out.shape == (2, 4)


def test_generate_on_a_left_padded_batch_equals_each_row_alone():
    torch.manual_seed(0)
    lm = TinyLM(12, 16, 2, 2, 16).eval()
    rows = [[3, 4], [5, 6, 7, 8]]
    ids, mask = pad_left(rows)
    batched = generate(lm, ids, pad_mask=mask, max_new=5, repetition_penalty=1.1, no_repeat_ngram=3)
    for i, row in enumerate(rows):
        alone = generate(lm, torch.tensor([row]), max_new=5, repetition_penalty=1.1, no_repeat_ngram=3)
        assert batched[i].tolist() == alone[0].tolist()


# --- Translator ---------------------------------------------------------------------------


def _translator(target_rms: float = 1.0) -> Translator:
    torch.manual_seed(0)
    return Translator(d_a=16, d_b=24, n_queries=4, d_model=16, n_heads=2, n_layers=2, target_rms=target_rms).eval()


def _open_gates(tr: Translator) -> None:
    with torch.no_grad():
        for block in tr.blocks:
            block.gate.fill_(1.0)


def test_translator_gate_init_zero_means_a_contributes_nothing_at_init():
    tr = _translator()
    states, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    assert all(b.gate.item() == 0.0 for b in tr.blocks)
    assert torch.allclose(tr(states, mask), tr(torch.randn(2, 5, 16), mask), atol=1e-6)
    _open_gates(tr)  # positive control: with open gates A's states matter
    assert not torch.allclose(tr(states, mask), tr(torch.randn(2, 5, 16), mask), atol=1e-3)


def test_translator_output_rms_matches_target_per_soft_token():
    tr = _translator(target_rms=0.37)
    _open_gates(tr)
    out = tr(torch.randn(3, 5, 16) * 10, torch.ones(3, 5, dtype=torch.bool))
    assert out.shape == (3, 4, 24)
    assert torch.allclose(out.pow(2).mean(-1).sqrt(), torch.full((3, 4), 0.37), atol=1e-4)


def test_translator_ignores_padded_positions_of_a_states():
    tr = _translator()
    _open_gates(tr)
    states = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    base = tr(states, mask)
    pads_changed = states.clone()
    pads_changed[0, 3:] = torch.randn(3, 16) * 5
    assert torch.allclose(base, tr(pads_changed, mask), atol=1e-6)
    real_changed = states.clone()
    real_changed[0, 1] = torch.randn(16) * 5
    assert not torch.allclose(base[0], tr(real_changed, mask)[0], atol=1e-3)


# --- Bridged inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 7, 16])
def test_derangement_is_a_seeded_permutation_without_fixed_points(n):
    for seed in range(20):
        perm = derangement(n, seed)
        assert sorted(perm.tolist()) == list(range(n))
        assert not bool((perm == torch.arange(n)).any())
        assert torch.equal(perm, derangement(n, seed))
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, 0)


def _untrained_bridge() -> tuple[Bridge, list[Example]]:
    torch.manual_seed(0)
    bridge = make_bridge(TinyLM(VOCAB_A, 16, 1, 2, 32).eval(), TinyLM(VOCAB_B, 24, 1, 2, 32).eval())
    _open_gates(bridge.translator)
    return bridge, copy_examples(4, seed=3)


def test_cached_a_states_give_the_soft_tokens_a_fresh_forward_of_a_gives():
    bridge, _ = _untrained_bridge()
    rng = random.Random(4)  # questions of 1-7 tokens: each batch pads them differently
    questions = ["".join(rng.choice(ALPHABET[:-1]) for _ in range(rng.randint(1, 7))) for _ in range(9)]
    examples = [Example(tuple(encode_a(q)), tuple(encode_b(q)), (EOS,), (EOS,)) for q in questions]
    cache = StateCache(bridge, examples, chunk=4)
    idx = [7, 0, 3, 3, 8]
    with torch.no_grad():
        fresh = bridge.soft([examples[i] for i in idx])
        cached = bridge.soft([examples[i] for i in idx], cache.batch(idx))
    assert cached.shape == fresh.shape
    assert torch.allclose(cached, fresh, atol=1e-5)
    hidden, mask = cache.batch(idx)
    assert mask.sum(1).tolist() == [len(examples[i].a_question) for i in idx]


def test_shuffled_mode_gives_each_example_another_examples_soft_tokens():
    bridge, batch = _untrained_bridge()
    with torch.no_grad():
        soft = bridge.soft(batch)
        shuffled, _ = bridge.b_prompt("shuffled", batch, seed=5)
    assert torch.allclose(shuffled[:, :4], soft[derangement(4, 5)])
    anchor = bridge.lm_b.embed(torch.tensor(encode_b("="))).expand(4, -1, -1)
    assert torch.allclose(shuffled[:, 4:], anchor)


def test_only_text_mode_b_inputs_depend_on_the_question_tokens_b_sees():
    bridge, batch = _untrained_bridge()
    other_q = [Example(e.a_question, tuple(encode_b("hhhhh")), e.a_answer, e.b_answer) for e in batch]
    with torch.no_grad():
        for mode in ("bridged", "no_bridge", "shuffled"):
            assert torch.equal(bridge.b_prompt(mode, batch)[0], bridge.b_prompt(mode, other_q)[0])
        assert not torch.equal(bridge.b_prompt("text", batch)[0], bridge.b_prompt("text", other_q)[0])


@pytest.mark.parametrize("mode", ["bridged", "no_bridge", "shuffled", "text"])
def test_b_embedding_looks_up_only_the_anchor_and_bs_own_tokens_unless_text_mode(mode):
    """A recording hook on B's embedding: in bridged / no_bridge / shuffled modes the only ids it
    ever receives are the anchor's, then each column B generated — no question or answer id."""
    bridge, batch = _untrained_bridge()
    seen: list[torch.Tensor] = []
    handle = bridge.lm_b.embed.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].clone()))
    try:
        out = bridge.answer(mode, batch, Decoding(max_new=5))
    finally:
        handle.remove()
    assert len(out) == 4
    if mode == "text":  # positive control: the hook does see the question when B reads it
        assert set(batch[0].b_question) <= set(seen[0][0].tolist())
        return
    assert seen[0].tolist() == [encode_b("=")]
    generated = [col.tolist() for col in seen[1:]]
    for j, col in enumerate(generated):  # each later lookup is column j of what B generated
        assert [row[j] if j < len(row) else EOS for row in out] == col


def test_a_alone_mode_lets_a_generate_from_its_own_question():
    bridge, batch = _untrained_bridge()
    seen: list[torch.Tensor] = []
    handle = bridge.lm_a.embed.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].clone()))
    try:
        bridge.answer("a_alone", batch, Decoding(max_new=3))
    finally:
        handle.remove()
    assert seen[0][0].tolist() == list(batch[0].a_question) + encode_a("=")


def test_teacher_forced_loss_scores_answer_token_j_at_position_m_plus_anchor_plus_j_minus_1():
    bridge, batch = _untrained_bridge()
    ex = batch[0]
    with torch.no_grad():
        soft = bridge.soft([ex])
        lm_b = bridge.lm_b
        x = torch.cat([soft, lm_b.embed(torch.tensor([encode_b("=") + list(ex.b_answer)]))], 1)
        logp = lm_b(inputs_embeds=x).log_softmax(-1)[0]
        start = soft.shape[1] + 1 - 1
        manual = -sum(logp[start + j, tok] for j, tok in enumerate(ex.b_answer)) / len(ex.b_answer)
        assert float(bridge.teacher_forced_loss(soft, [ex])) == pytest.approx(float(manual), rel=1e-5)


# --- Training -----------------------------------------------------------------------------


def test_info_nce_on_fixed_vectors_and_its_switch_on_schedule():
    eye = torch.eye(2)
    expected = torch.log1p(torch.exp(torch.tensor(-1.0)))  # -log(e / (e + 1)) at τ 1
    assert float(info_nce(eye, eye, tau=1.0)) == pytest.approx(float(expected), rel=1e-6)
    assert float(info_nce(eye, eye.flip(0), tau=1.0)) == pytest.approx(float(expected + 1), rel=1e-6)
    cfg = TrainConfig(warmup=100, stability=True)
    assert [info_nce_weight(s, cfg) for s in (0, 49, 50, 500)] == [0.0, 0.0, 0.05, 0.05]
    assert info_nce_weight(500, TrainConfig(warmup=100, stability=False)) == 0.0


@pytest.mark.parametrize("stability", [True, False])
def test_early_stopping_patience_5_restores_best_state_only_with_stability(stability):
    bridge, _ = _untrained_bridge()
    examples = copy_examples(32, seed=4)
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.3, 0.2, 0.2, 0.9, 0.1, 0.0])
    snapshots, decodings = [], []

    def val_fn(decoding):
        decodings.append(decoding)
        snapshots.append({k: v.clone() for k, v in bridge.translator.state_dict().items()})
        return next(scripted)

    cfg = TrainConfig(steps=20, batch_size=4, lr=1e-3, warmup=2, eval_every=2, stability=stability)
    res = train_translator(bridge, examples, val_fn, cfg)
    kept = bridge.translator.state_dict()
    if stability:
        assert [h["step"] for h in res.history] == [2, 4, 6, 8, 10, 12, 14]  # 5 evals after the peak, then stop
        assert (res.peak, res.last, res.final, res.best_step, res.stopped_step) == (0.5, 0.2, 0.5, 4, 14)
        assert all(torch.equal(kept[k], snapshots[1][k]) for k in kept)
        assert decodings[0] == Decoding(16, 1.1, 3)
    else:
        assert len(res.history) == 10 and res.stopped_step == 20
        assert (res.peak, res.last, res.final, res.best_step) == (0.9, 0.0, 0.0, 16)
        assert all(torch.equal(kept[k], snapshots[-1][k]) for k in kept)
        assert decodings[0] == Decoding(16, 1.0, 0)
    assert res.degradation == pytest.approx(res.peak - res.final)


def test_tiny_end_to_end_lms_and_translator_learn_and_frozen_lms_stay_unchanged(tiny_lms):
    lm_a, lm_b, hist_a, hist_b = tiny_lms
    assert sum(hist_a[-10:]) < 0.7 * sum(hist_a[:10]) and sum(hist_b[-10:]) < 0.7 * sum(hist_b[:10])
    bridge = make_bridge(lm_a, lm_b)
    before = {n: p.clone() for lm in (lm_a, lm_b) for n, p in lm.named_parameters(prefix=str(id(lm)))}
    val = copy_examples(16, seed=2)

    def val_fn(decoding):
        answers = bridge.answer("bridged", val, decoding)
        return sum(a == list(e.b_answer[:-1]) for a, e in zip(answers, val, strict=True)) / len(val)

    cfg = TrainConfig(steps=100, batch_size=16, lr=3e-3, warmup=10, eval_every=25, stability=True)
    res = train_translator(bridge, copy_examples(320, seed=5), val_fn, cfg)
    first, last = sum(res.losses[:10]) / 10, sum(res.losses[-10:]) / 10
    print(f"translator loss {first:.3f} -> {last:.3f}; history {res.history}; peak {res.peak} final {res.final}")
    assert last < first
    after = {n: p for lm in (lm_a, lm_b) for n, p in lm.named_parameters(prefix=str(id(lm)))}
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert not any(p.requires_grad for lm in (lm_a, lm_b) for p in lm.parameters())

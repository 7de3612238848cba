"""Pretrained causal LMs from GGUF files behind the interface the bridge uses for TinyLM.

The bridge (studies/bridge/bridged.py, train.py, lm.generate) needs of an LM: ``embed`` (the
token-embedding module, ids → what the model reads), ``d_model``, ``max_len``,
``embedding_rms()`` and ``forward(ids | inputs_embeds, pad_mask, return_hidden)`` returning
logits (and the last hidden states, after the final norm). ``PretrainedLM`` gives a frozen
Hugging Face causal LM exactly that, so SmolLM2-135M (A) and Gemma-3-270M (B) drop in for the
tiny pair; ``load_gguf`` reads one from a GGUF file with ``transformers`` (``gguf_file=``).

A model trained with a BOS token (Gemma) gets it inside ``forward``, before whatever it is
handed, and the tokenizer is exported without the post-processor that would add it: so B reads
``[BOS ‖ soft tokens ‖ anchor]`` in bridged mode instead of a BOS in the middle, and every mode
(text, no_bridge, shuffled) starts the way the model was trained, from the one code path.

``transformers`` is an optional extra (``pip install -e '.[pretrained]'``): it is imported only
inside ``load_gguf`` / ``export_tokenizer``, never when this module is imported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# The project's special-token names (studies/bridge/tokenizers.py) → the transformers tokenizer
# attribute naming the model's own token for that role.
SPECIAL_ROLES = {"[EOS]": "eos_token", "[PAD]": "pad_token", "[BOS]": "bos_token", "[UNK]": "unk_token"}


class PretrainedLM(nn.Module):
    """A frozen causal LM (eval mode, no gradients to its weights) with TinyLM's interface.

    ``pad_mask`` (True = real token) becomes the attention mask, and positions count from each
    row's first real token, as in TinyLM: a left-padded row computes what it computes unpadded."""

    def __init__(self, model: nn.Module, bos_id: int | None):
        super().__init__()
        self.model = model
        self.embed = model.get_input_embeddings()
        self.d_model = model.config.hidden_size
        self.vocab = self.embed.num_embeddings
        self.bos_id = bos_id
        self.max_len = model.config.max_position_embeddings - (bos_id is not None)
        with torch.no_grad():  # what the model reads first, prepended to every input
            bos = self.embed(torch.tensor([[bos_id]])) if bos_id is not None else torch.zeros(1, 0, self.d_model)
        self.register_buffer("bos_embed", bos)
        self.eval().requires_grad_(False)

    def forward(
        self,
        ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pad_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, vocab); with ``return_hidden`` also the last hidden states (B, T, d)
        after the final norm. Exactly one of ``ids`` / ``inputs_embeds``; the BOS position's
        outputs are dropped, so T is the length handed in."""
        if (ids is None) == (inputs_embeds is None):
            raise ValueError("PretrainedLM.forward: pass exactly one of ids / inputs_embeds")
        x = self.embed(ids) if inputs_embeds is None else inputs_embeds
        b, t, _ = x.shape
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
        mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if pad_mask is None else pad_mask.bool()
        k = self.bos_embed.shape[1]
        x = torch.cat([self.bos_embed.to(x.dtype).expand(b, -1, -1), x], 1)
        mask = torch.cat([mask.new_ones(b, k), mask], 1)
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)
        out = self.model(
            inputs_embeds=x,
            attention_mask=mask.long(),
            position_ids=pos,
            output_hidden_states=return_hidden,
            use_cache=False,
        )
        logits = out.logits[:, k:]
        return (logits, out.hidden_states[-1][:, k:]) if return_hidden else logits

    @torch.no_grad()
    def embedding_rms(self) -> float:
        """RMS of what ``embed`` returns over the whole vocabulary: the scale soft tokens are
        matched to. Computed through the module, not from its weight, because Gemma scales its
        table by √d inside the embedding (the table's own RMS is ~25x too small)."""
        total, device = 0.0, self.embed.weight.device
        for start in range(0, self.vocab, 8192):
            ids = torch.arange(start, min(start + 8192, self.vocab), device=device)
            total += self.embed(ids).double().pow(2).sum().item()
        return (total / (self.vocab * self.d_model)) ** 0.5


class NamedSpecials:
    """A ``tokenizers.Tokenizer`` that also answers the project's special names ("[EOS]", "[PAD]")
    with the model's own tokens (SmolLM2's "<|im_end|>", Gemma's "<eos>"), so the hand-over code
    asks every tokenizer for "[EOS]" alike; ``bos`` is the token the model reads first (None: none).
    Only the methods the bridge stages use."""

    def __init__(self, tokenizer, specials: dict[str, str], bos: str | None):
        self.tokenizer, self.specials, self.bos = tokenizer, dict(specials), bos

    @property
    def bos_id(self) -> int | None:
        return None if self.bos is None else self.tokenizer.token_to_id(self.bos)

    def token_to_id(self, name: str) -> int | None:
        return self.tokenizer.token_to_id(self.specials.get(name, name))

    def encode(self, text: str):
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def get_vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def _split(path: Path) -> tuple[str, str]:
    """(directory, file name): how transformers takes a local GGUF file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist")
    return str(path.parent), path.name


def export_tokenizer(path: Path) -> NamedSpecials:
    """The GGUF file's tokenizer, without the post-processor that would add BOS to every text
    (PretrainedLM adds it), with its special names. A model without EOS cannot end an answer."""
    from transformers import AutoTokenizer

    folder, name = _split(path)
    hf = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    specials = {ours: getattr(hf, role) for ours, role in SPECIAL_ROLES.items() if getattr(hf, role) is not None}
    if "[EOS]" not in specials:
        raise ValueError(f"GGUF file {str(path)!r}: its tokenizer names no EOS token")
    specials.setdefault("[PAD]", specials["[EOS]"])  # padding is always masked; any id will do
    adds_bos = hf.bos_token_id is not None and hf("a")["input_ids"][0] == hf.bos_token_id
    tok = hf.backend_tokenizer
    tok.post_processor = None
    return NamedSpecials(tok, specials, hf.bos_token if adds_bos else None)


def load_gguf(path: Path, bos_id: int | None, device: str = "cpu") -> PretrainedLM:
    """The causal LM in a GGUF file (dequantised to float32 by transformers), frozen, on ``device``;
    ``bos_id``: the token it reads first (``export_tokenizer(path).bos_id``)."""
    from transformers import AutoModelForCausalLM

    folder, name = _split(path)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return PretrainedLM(model, bos_id).to(device)

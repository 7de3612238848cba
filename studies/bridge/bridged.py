"""What each LM reads in each evaluation mode, and the answers it generates.

B's input per mode (anchor = B's tokens of e.g. "Answer: "):
  bridged    [soft tokens from A's states ‖ anchor]
  shuffled   [soft tokens of ANOTHER example in the batch (a seeded derangement) ‖ anchor] — leak control
  no_bridge  [anchor] only
  text       [B's tokens of the question ‖ anchor] — the text baseline
and `a_alone`: A generates from [A's tokens of the question ‖ A's anchor].
The question reaches B only in `text` mode: in the others B's embedding looks up the anchor and
B's own generated tokens, nothing else (tests/bridge/test_bridge_models.py proves it with a hook).
Answers are never part of any evaluation input (the source's leak); `teacher_forced` appends them
for the training loss only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from studies.bridge.lm import TinyLM, generate
from studies.bridge.translator import Translator

MODES = ("bridged", "text", "no_bridge", "shuffled", "a_alone")


@dataclass(frozen=True)
class Example:
    """One question/answer pair tokenised for both LMs. Answers end with their LM's eos id."""

    a_question: tuple[int, ...]
    b_question: tuple[int, ...]
    a_answer: tuple[int, ...]
    b_answer: tuple[int, ...]


@dataclass(frozen=True)
class Decoding:
    """Greedy decoding settings; the stability switch sets hygiene (1.1, 3)."""

    max_new: int = 16
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) right-padded; mask True = real token."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) left-padded, so every prompt ends at the last column and generation appends."""
    ids, mask = pad_right([list(s)[::-1] for s in seqs], pad_id)
    return ids.flip(1), mask.flip(1)


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation with no fixed point (Sattolo's algorithm: one random n-cycle), so in
    `shuffled` mode no example ever gets its own soft tokens."""
    if n < 2:
        raise ValueError(f"shuffled mode needs a batch of at least 2 examples, got {n}")
    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        perm[i], perm[j] = perm[j], perm[i]
    return torch.tensor(perm)


def _on(lm: torch.nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors moved to `lm`'s device (ids are built on the CPU)."""
    device = next(lm.parameters()).device
    return tuple(t.to(device) for t in tensors)


class Bridge:
    """Frozen A and B, the translator, and the anchor string tokenised for each LM."""

    def __init__(
        self,
        lm_a: TinyLM,
        lm_b: TinyLM,
        translator: Translator,
        encode_a: Callable[[str], list[int]],
        encode_b: Callable[[str], list[int]],
        eos_a: int,
        eos_b: int,
        anchor: str = "Answer: ",
    ):
        self.lm_a, self.lm_b, self.translator = lm_a, lm_b, translator
        self.anchor = anchor
        self.anchor_a = list(encode_a(anchor))
        self.anchor_b = list(encode_b(anchor))
        if not self.anchor_b:
            raise ValueError(f"anchor {anchor!r} encodes to no tokens for B")
        self.eos_a, self.eos_b = eos_a, eos_b

    def a_states(self, batch: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """A's last hidden states over A's question tokens (B, T, d_A), right-padded, and their mask."""
        ids, mask = _on(self.lm_a, *pad_right([e.a_question for e in batch]))
        _, hidden = self.lm_a(ids, pad_mask=mask, return_hidden=True)
        return hidden, mask

    def soft(self, batch: Sequence[Example], states: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Soft tokens (B, M, d_B) from A's states: ``states`` when given (a cache of
        :meth:`a_states`: A is frozen, so they never change), else computed now."""
        hidden, mask = self.a_states(batch) if states is None else states
        return self.translator(hidden, mask)

    def b_prompt(self, mode: str, batch: Sequence[Example], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """B's inputs_embeds (B, T, d_B) and pad mask for `mode` (see the module docstring)."""
        n = len(batch)
        if mode == "text":
            ids, mask = _on(self.lm_b, *pad_left([list(e.b_question) + self.anchor_b for e in batch]))
            return self.lm_b.embed(ids), mask
        anchor = self.anchor_embeds(n)
        if mode == "no_bridge":
            x = anchor
        elif mode == "bridged":
            x = torch.cat([self.soft(batch), anchor], 1)
        elif mode == "shuffled":
            x = torch.cat([self.soft(batch)[derangement(n, seed)], anchor], 1)
        else:
            raise ValueError(f"b_prompt: mode {mode!r} is not one of bridged, text, no_bridge, shuffled")
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)

    def anchor_embeds(self, n: int) -> torch.Tensor:
        """B's embeddings of the anchor tokens, (n, k, d_B)."""
        (ids,) = _on(self.lm_b, torch.tensor([self.anchor_b]))
        return self.lm_b.embed(ids).expand(n, -1, -1)

    @torch.no_grad()
    def answer(self, mode: str, batch: Sequence[Example], decoding: Decoding, seed: int = 0) -> list[list[int]]:
        """Generated token ids per example, cut before eos: B's vocabulary, A's for `a_alone`."""
        if mode == "a_alone":
            ids, mask = _on(self.lm_a, *pad_left([list(e.a_question) + self.anchor_a for e in batch]))
            lm, eos, prompt = self.lm_a, self.eos_a, {"ids": ids}
        else:
            x, mask = self.b_prompt(mode, batch, seed)
            lm, eos, prompt = self.lm_b, self.eos_b, {"inputs_embeds": x}
        out = generate(
            lm,
            **prompt,
            pad_mask=mask,
            max_new=decoding.max_new,
            eos_id=eos,
            repetition_penalty=decoding.repetition_penalty,
            no_repeat_ngram=decoding.no_repeat_ngram,
        )
        return [row[: row.index(eos)] if eos in row else row for row in out.tolist()]

    def teacher_forced_loss(self, soft: torch.Tensor, batch: Sequence[Example]) -> torch.Tensor:
        """Training loss: B's cross-entropy on the answer tokens given [soft ‖ anchor ‖ answer so far]."""
        answers, mask = _on(self.lm_b, *pad_right([e.b_answer for e in batch]))
        x = torch.cat([soft, self.anchor_embeds(len(batch)), self.lm_b.embed(answers[:, :-1])], 1)
        logits = self.lm_b(inputs_embeds=x)[:, soft.shape[1] + len(self.anchor_b) - 1 :]
        targets = answers.masked_fill(~mask, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

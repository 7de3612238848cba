"""Answer extractors and scorers for the bridge study, tested on fixed strings.

Why this module exists: the source's headline numbers came from scorers, not models. Its 73 %
text baseline used a lenient last-number extractor (31.4 % under GSM8K's official rule), and its
HotpotQA "100 %" compared "[invalid]" to "[invalid]". So here:

- `gsm8k_official` is the rule of openai/grade_school_math (`extract_answer`): the number right
  after the first "#### " (``ANS_RE.search``), commas stripped. One addition, applied to both
  sides: the string is put in canonical numeric form, so "1,000" == "1000" and "3.0" == "3".
- `gsm8k_lenient` takes the last number anywhere; it is reported beside the official number
  under a key that says it is not official, never instead of it.
- SQuAD EM / F1 follow the SQuAD v1.1 evaluation script (lower case, drop punctuation and the
  articles a/an/the, collapse whitespace).
- An invalid answer never scores: no extracted number, an empty normalised string or the
  literal "[invalid]" marker is wrong on either side, so invalid never equals invalid.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

INVALID = "[invalid]"  # the marker the source's extractors emit; treated as no answer, never as a string to match
TASKS = ("gsm8k", "two_hop")  # gsm8k: numeric answers (GSM8K or generated arithmetic); two_hop: short text answers

_OFFICIAL_RE = re.compile(r"#### (\-?[0-9\.\,]+)")  # verbatim from openai/grade_school_math dataset.py
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def canonical_number(s: str) -> str | None:
    """Canonical decimal form of a numeric string ("1,000" → "1000", "3.0" → "3", "-0.50" → "-0.5");
    None when it is not a number (".", "1.2.3", "-")."""
    try:
        value = Decimal(s.replace(",", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def gsm8k_official(text: str | None) -> str | None:
    """The official GSM8K answer: the number after the first "#### ", canonical; None if absent."""
    match = _OFFICIAL_RE.search(text or "")
    return canonical_number(match.group(1)) if match else None


def gsm8k_lenient(text: str | None) -> str | None:
    """Last number anywhere in the text, canonical; None if there is none. NOT the official rule."""
    numbers = _NUMBER_RE.findall(text or "")
    return canonical_number(numbers[-1]) if numbers else None


def gsm8k_gold(text: str | None) -> str | None:
    """The gold answer: a GSM8K solution ("... #### 72") by the official rule, else the whole
    string must be one number ("72", "1,000"); anything else is an invalid gold (None)."""
    if text is None:
        return None
    return gsm8k_official(text) if "####" in text else canonical_number(text)


def gsm8k_correct(pred_text: str | None, gold_text: str | None, lenient: bool = False) -> bool:
    """True when the extracted prediction equals the gold answer; False whenever either side has
    no valid answer, so two invalid answers never match."""
    pred = gsm8k_lenient(pred_text) if lenient else gsm8k_official(pred_text)
    gold = gsm8k_gold(gold_text)
    return pred is not None and gold is not None and pred == gold


def squad_normalize(s: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation, drop a/an/the, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES_RE.sub(" ", s).split())


def _valid_tokens(s: str | None) -> list[str]:
    """Normalised tokens of a valid answer; [] for None, the INVALID marker, or nothing left after normalising."""
    if s is None or s.strip() == INVALID:
        return []
    return squad_normalize(s).split()


def exact_match(pred: str | None, gold: str | None) -> float:
    """1.0 when the SQuAD-normalised strings are equal and non-empty; an invalid side scores 0."""
    p, g = _valid_tokens(pred), _valid_tokens(gold)
    return float(bool(p) and p == g)


def f1(pred: str | None, gold: str | None) -> float:
    """SQuAD token F1. Unlike SQuAD v2 (where empty vs empty = 1 marks a correct "no answer"),
    every question here has an answer, so an empty or invalid prediction — or gold — scores 0:
    otherwise a model that emits nothing would be rewarded wherever the gold failed to parse."""
    p, g = _valid_tokens(pred), _valid_tokens(gold)
    if not p or not g:
        return 0.0
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score_batch(preds: Sequence[str | None], golds: Sequence[str | None], task: str) -> dict[str, float]:
    """Mean metrics over a batch, with keys that say what they are.

    gsm8k: ``acc_official`` (the number to report), ``acc_lenient_not_official`` (the source's
    kind of extractor, for comparison only), ``invalid_official`` (share of predictions with no
    official answer). two_hop: ``em``, ``f1``, ``invalid`` (share of empty/invalid predictions).
    """
    if task not in TASKS:
        raise ValueError(f"score_batch: task {task!r} is not one of {TASKS}")
    if len(preds) != len(golds):
        raise ValueError(f"score_batch: {len(preds)} predictions but {len(golds)} golds")
    if not preds:
        raise ValueError("score_batch: empty batch has no mean")
    n = len(preds)
    pairs = list(zip(preds, golds, strict=True))
    if task == "gsm8k":
        return {
            "n": n,
            "acc_official": sum(gsm8k_correct(p, g) for p, g in pairs) / n,
            "acc_lenient_not_official": sum(gsm8k_correct(p, g, lenient=True) for p, g in pairs) / n,
            "invalid_official": sum(gsm8k_official(p) is None for p in preds) / n,
        }
    return {
        "n": n,
        "em": sum(exact_match(p, g) for p, g in pairs) / n,
        "f1": sum(f1(p, g) for p, g in pairs) / n,
        "invalid": sum(not _valid_tokens(p) for p in preds) / n,
    }

"""Question/answer sets for the bridge: generated arithmetic and two-hop sets, GSM8K and HotpotQA.

Every source yields :class:`Example` rows; :func:`split_disjoint` makes train/val/test that
share no question (see there for what counts as the same question), and :func:`lm_corpus`
writes the texts the two tiny LMs are trained on, ending each prompt with the anchor
``"Answer: "`` that LM B also reads after the soft tokens.

Generated sets are the offline default. Names, cities, countries and companies are invented
and every two-hop example draws its own facts (a city lies in a different country in
another example), so the answer can only come from the context, never from memory.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from studies.bridge.scorers import gsm8k_gold
from studies.data.corpora import linked_groups
from studies.data.hub import hub_offline

TASKS = ("arith", "twohop")
SCORER_TASK = {"arith": "gsm8k", "twohop": "two_hop"}  # the scorers.score_batch task of each data task
ANCHOR = "Answer: "
HUB = {"gsm8k": ("openai/gsm8k", "main"), "hotpotqa": ("hotpotqa/hotpot_qa", "distractor")}


@dataclass(frozen=True)
class Example:
    """One question. ``answer`` is the full target text (GSM8K style: reasoning lines, then
    ``#### N``; the short answer for two-hop); ``gold`` the canonical short answer."""

    question: str
    answer: str
    gold: str
    context: str
    task: str


NAMES = {"Ada": "she", "Ben": "he", "Cora": "she", "Dev": "he", "Eli": "he", "Fay": "she", "Gus": "he"}
NAMES |= {"Hana": "she", "Ivo": "he", "Jun": "he", "Kira": "she", "Leo": "he", "Mia": "she", "Nils": "he"}
NAMES |= {"Omar": "he", "Pia": "she", "Raj": "he", "Sara": "she", "Tom": "he", "Uma": "she", "Vik": "he"}
OBJECTS = "apples pears marbles stickers cards shells stamps coins pencils cookies beads books eggs plums".split()
_OBJ = {"he": "him", "she": "her"}
_POS = {"he": "his", "she": "her"}


def _arith_problem(rng: random.Random) -> tuple[str, list[str], int]:
    """Question, reasoning lines and result of one problem with 1-3 arithmetic operations."""
    name, friend = rng.sample(sorted(NAMES), 2)
    p, obj = NAMES[name], rng.choice(OBJECTS)
    n = rng.randint(2, 20)
    start = rng.choice(["{N} has {a} {o}.", "{N} starts the day with {a} {o}.", "{N} collected {a} {o}."])
    sentences, lines = [start.format(N=name, a=n, o=obj)], []
    ops = rng.randint(1, 3)
    while ops:
        k = 0
        kind = rng.choice(["add"] + ["sub"] * (n >= 2) + ["half"] * (n % 2 == 0) + ["bags"] * (ops >= 2))
        if kind == "add":
            b = rng.randint(1, 12)
            verb = rng.choice(["{P} buys {b} more {o}.", "{F} gives {O} {b} {o}.", "{P} finds {b} {o}."])
            lines.append(f"{name} gets {b} more: {n} + {b} = {n + b} {obj}.")
            n, ops = n + b, ops - 1
        elif kind == "sub":
            b = rng.randint(1, n - 1)
            verb = rng.choice(["{P} gives {b} {o} to {F}.", "{P} sells {b} {o}.", "{P} loses {b} {o}."])
            lines.append(f"{name} has {b} fewer: {n} - {b} = {n - b} {obj}.")
            n, ops = n - b, ops - 1
        elif kind == "half":
            b, verb = n // 2, "{P} gives half of {S} {o} to {F}."
            lines.append(f"Half of {n} is {n} / 2 = {b}, so {name} keeps {b} {obj}.")
            n, ops = b, ops - 1
        else:
            k, b = rng.randint(2, 5), rng.randint(2, 10)
            verb = "{P} buys {k} bags with {b} {o} in each."
            lines.append(f"The bags hold {k} * {b} = {k * b} {obj}, so {name} has {n} + {k * b} = {n + k * b} {obj}.")
            n, ops = n + k * b, ops - 2
        sentences.append(verb.format(P=p.capitalize(), O=_OBJ[p], S=_POS[p], F=friend, o=obj, b=b, k=k))
    ask = rng.choice(["How many {o} does {N} have now?", "How many {o} does {N} end up with?"])
    sentences.append(ask.format(o=obj, N=name))
    return " ".join(sentences), lines, n


def generate_arith(n: int, seed: int) -> list[Example]:
    """``n`` GSM8K-style word problems, each normalised question (:func:`normalise`) once."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(100 * n):
        if len(out) == n:
            break
        question, lines, result = _arith_problem(rng)
        if normalise(question) not in seen:
            seen.add(normalise(question))
            out.append(Example(question, "\n".join([*lines, f"#### {result}"]), str(result), "", "arith"))
    if len(out) < n:
        raise ValueError(f"generate_arith found only {len(out)} distinct questions, asked for {n}")
    return out


_SURNAMES = [
    a + b
    for a in ("Ash", "Brook", "Clay", "Dale", "Fen", "Glen", "Hart", "Lang")
    for b in ("er", "ley", "wood", "by", "ton", "well")
]
PEOPLE = [f"{first} {last}" for first in sorted(NAMES) for last in _SURNAMES]
CITIES = [a + b for a in ("Bel", "Cor", "Dun", "Fal", "Gar", "Hol") for b in ("ford", "mere", "stad", "ton", "vik")]
COUNTRIES = [a + b for a in ("Ar", "Bor", "Cal", "Dor", "El") for b in ("ania", "esh", "ovia", "land")]
COMPANIES = [f"{a} {b}" for a in ("Blue", "Iron", "North", "Red") for b in ("Works", "Mills", "Labs", "Foods")]
# relation: (first-hop fact, second-hop fact, question phrasings); {x} person, {y} bridge entity, {z} answer
_RELATIONS = {
    "born": ("{x} was born in {y}.", "{y} is a city in {z}.", ["In which country was {x} born?"]),
    "lives": ("{x} lives in {y}.", "{y} is a city in {z}.", ["In which country does {x} live?"]),
    "studied": ("{x} studied in {y}.", "{y} lies in {z}.", ["Which country did {x} study in?"]),
    "grew": ("{x} grew up in {y}.", "{y} is a town in {z}.", ["In which country did {x} grow up?"]),
    "works": ("{x} works for {y}.", "{y} is based in {z}.", ["In which city is the company {x} works for based?"]),
}
_RELATIONS["born"][2].append("{x} was born in which country?")
_RELATIONS["lives"][2].append("Which country does {x} live in?")
_RELATIONS["studied"][2].append("In which country did {x} study?")
_RELATIONS["grew"][2].append("Which country did {x} grow up in?")
_RELATIONS["works"][2].append("Which city is the employer of {x} based in?")


def _twohop_problem(rng: random.Random) -> tuple[str, str, str]:
    """Question, context (2-4 paragraphs, one per line) and answer of one two-hop question."""
    rel = rng.choice(sorted(_RELATIONS))
    first, second, asks = _RELATIONS[rel]
    x, other = rng.sample(PEOPLE, 2)
    bridges, answers = (COMPANIES, CITIES) if rel == "works" else (CITIES, COUNTRIES)
    (y, y2), (z, z2) = rng.sample(bridges, 2), rng.sample(answers, 2)
    distractors = [first.format(x=other, y=y2), second.format(y=y2, z=z2)]
    paragraphs = [first.format(x=x, y=y), second.format(y=y, z=z), *distractors[: rng.randint(0, 2)]]
    rng.shuffle(paragraphs)
    return rng.choice(asks).format(x=x), "\n".join(paragraphs), z


def generate_twohop(n: int, seed: int) -> list[Example]:
    """``n`` two-hop questions whose answer is a span of their context, each question once."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(100 * n):
        if len(out) == n:
            break
        question, context, answer = _twohop_problem(rng)
        if normalise(question) not in seen:
            seen.add(normalise(question))
            out.append(Example(question, answer, answer, context, "twohop"))
    if len(out) < n:
        raise ValueError(f"generate_twohop found only {len(out)} distinct questions, asked for {n}")
    return out


def _gsm8k_row(row: dict) -> Example:
    """A GSM8K row; its gold is what the scorer compares with (scorers.gsm8k_gold: the number
    after the FIRST ``#### ``, as openai/grade_school_math reads it), so the two never disagree."""
    if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
        raise ValueError(f"needs string fields 'question' and 'answer', got keys {sorted(row)}")
    gold = gsm8k_gold(row["answer"])
    if gold is None or "####" not in row["answer"]:
        raise ValueError(f"answer holds no GSM8K '#### N' gold: {row['answer'][-60:]!r}")
    return Example(row["question"], row["answer"], gold, "", "arith")


def _hotpot_row(row: dict) -> Example:
    """A HotpotQA row: ``context`` as the json files hold it ([[title, [sentences]], ...]) or as
    the hub does ({"title": [...], "sentences": [[...], ...]}); one paragraph per line."""
    context = row.get("context")
    if isinstance(context, dict):
        context = list(zip(context.get("title", []), context.get("sentences", []), strict=True))
    if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
        raise ValueError(f"needs string fields 'question' and 'answer', got keys {sorted(row)}")
    ok = isinstance(context, list) and all(
        len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], list) and all(isinstance(s, str) for s in p[1])
        for p in context
    )
    if not ok:
        raise ValueError("'context' must be a list of [title, [sentences]]")
    text = "\n".join(f"{title}: {''.join(sentences).strip()}" for title, sentences in context)
    return Example(row["question"], row["answer"], row["answer"], text, "twohop")


def _local_rows(path: Path) -> list[tuple[str, object]]:
    """(where, row) pairs: ``line N`` of a .jsonl file or ``index N`` of a .json list."""
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((f"line {i}", json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {i}: not valid JSON ({err.msg})") from err
        return rows
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    return [(f"index {i}", row) for i, row in enumerate(data)]


def _hub_rows(name: str, split: str, offline: bool) -> list[tuple[str, object]]:
    import datasets

    path, config = HUB.get(name, (name, None))
    try:
        with hub_offline(offline):
            ds = datasets.load_dataset(path, config, split=split)
    except OSError as err:  # ConnectionError, offline mode, not cached (FileNotFoundError)
        raise RuntimeError(
            f"cannot load {path} ({config}, split {split!r}) from the dataset hub: it is unreachable "
            f"and the set is not cached ({type(err).__name__}: {err}). Pass a local file instead."
        ) from err
    return [(f"{path} {split} index {i}", row) for i, row in enumerate(ds)]


def _load(source: str | Path, split: str, offline: bool, parse) -> list[Example]:
    path = Path(source)
    local = path.exists() or path.suffix in (".json", ".jsonl")
    rows = _local_rows(path) if local else _hub_rows(str(source), split, offline)
    out = []
    for where, row in rows:
        try:
            if not isinstance(row, dict):
                raise ValueError(f"row must be an object, got {type(row).__name__}")
            out.append(parse(row))
        except ValueError as err:
            raise ValueError(f"{path if local else source}: {where}: {err}") from None
    return out


def load_gsm8k(source: str | Path, split: str = "test", offline: bool = False) -> list[Example]:
    """GSM8K from a local jsonl (``question``/``answer`` per line) or, for a name such as
    ``"gsm8k"``, from the hub; ``split`` applies to the hub only."""
    return _load(source, split, offline, _gsm8k_row)


def load_hotpotqa(source: str | Path, split: str = "validation", offline: bool = False) -> list[Example]:
    """HotpotQA from a local json list (``question``, ``answer``, ``context``) or, for a name
    such as ``"hotpotqa"``, from the hub (distractor setting); ``split`` applies to the hub only."""
    return _load(source, split, offline, _hotpot_row)


def normalise(question: str) -> str:
    """Lowercase words with every number masked as ``#``, punctuation and spacing dropped:
    the form in which two questions count as the same."""
    masked = re.sub(r"\d+(?:[.,]\d+)*", " # ", question.lower())
    return " ".join(re.findall(r"[^\W\d_]+|#", masked))


def _contained_pairs(keys: list[str]) -> list[tuple[int, int]]:
    """(i, j), i != j, where normalised question i is a run of whole words of question j
    (equal questions included)."""
    words = [tuple(k.split()) for k in keys]
    index: dict[tuple, list[int]] = {}
    for i, w in enumerate(words):
        index.setdefault(w, []).append(i)
    sizes = sorted({len(w) for w in index})
    pairs = []
    for j, w in enumerate(words):
        for size in sizes:
            for start in range(len(w) - size + 1):
                pairs += [(i, j) for i in index.get(w[start : start + size], ()) if i != j]
    return pairs


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def split_disjoint(examples: list[Example], n_val: int, n_test: int, seed: int) -> dict[str, list[Example]]:
    """Train/val/test with exactly ``n_val``/``n_test`` examples and no shared question.

    Two questions are the same when their :func:`normalise` forms are equal (so a problem
    re-asked with other numbers is a duplicate: its wording was learned in train), when one
    occurs inside the other, or when the shingle linking of :func:`linked_groups`
    (studies/data/corpora.py) ties them. Such groups stay on one side; groups are dealt in a
    seeded shuffle to test, then val, while they fit; the rest is train. Each split keeps
    input order. A template's fixed wording (names, objects and numbers varying) is not a
    duplicate: the generated sets and GSM8K alike repeat phrasings by design.
    """
    if n_val < 0 or n_test < 0 or n_val + n_test >= len(examples):
        raise ValueError(f"n_val={n_val}, n_test={n_test} must be >= 0 and leave train examples of {len(examples)}")
    keys = [normalise(e.question) for e in examples]
    parent = linked_groups(keys)  # a root per question, itself a valid union-find forest
    for i, j in _contained_pairs(keys):
        parent[_root(parent, i)] = _root(parent, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(examples)):
        groups.setdefault(_root(parent, i), []).append(i)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    left, side = {"test": n_test, "val": n_val}, {}
    for g in order:
        side[g] = next((s for s in left if 0 < len(groups[g]) <= left[s]), "train")
        left[side[g]] = left.get(side[g], 0) - len(groups[g])
    if left["test"] or left["val"]:
        raise ValueError(f"too few distinct questions for val={n_val}, test={n_test}: still missing {left}")
    return {s: [e for i, e in enumerate(examples) if side[_root(parent, i)] == s] for s in ("train", "val", "test")}


def prompt(example: Example) -> str:
    """What a model reads before answering: the context (two-hop), the question, the anchor."""
    head = f"Context: {example.context}\n" if example.context else ""
    return f"{head}Question: {example.question}\n{ANCHOR}"


def lm_corpus(examples: list[Example]) -> list[str]:
    """The LM training texts: each example's :func:`prompt` followed by its full answer."""
    return [prompt(e) + e.answer for e in examples]

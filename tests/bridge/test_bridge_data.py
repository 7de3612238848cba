"""The bridge's question sets: generators, real-format loaders, the content-disjoint split, tokenizers."""

import re
from pathlib import Path

import pytest

from studies.bridge.data import (
    ANCHOR,
    generate_arith,
    generate_twohop,
    lm_corpus,
    load_gsm8k,
    load_hotpotqa,
    normalise,
    prompt,
    split_disjoint,
)
from studies.bridge.scorers import gsm8k_correct
from studies.bridge.tokenizers import PAD, UNK, build_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"


def _solve(question: str) -> int:
    """Recompute a generated problem's result from its question text alone."""
    sentences = re.split(r"(?<=[.?])\s+", question)
    n = int(re.search(r"\d+", sentences[0]).group())
    for s in sentences[1:-1]:
        if m := re.search(r"buys (\d+) bags with (\d+)", s):
            n += int(m.group(1)) * int(m.group(2))
        elif "half" in s:
            n -= n // 2
        elif m := re.search(r"(?:buys|finds|gives (?:him|her)) (\d+)", s):
            n += int(m.group(1))
        elif m := re.search(r"(?:gives|sells|loses) (\d+)", s):
            n -= int(m.group(1))
        else:
            raise AssertionError(f"unparsed sentence {s!r}")
    return n


def _contained(a: str, b: str) -> bool:
    return f" {a} " in f" {b} "


@pytest.mark.parametrize("generate", [generate_arith, generate_twohop])
def test_generators_are_deterministic_by_seed_and_questions_unique(generate):
    first, again, other = generate(300, seed=1), generate(300, seed=1), generate(300, seed=2)
    assert first == again
    assert first != other
    assert len({normalise(e.question) for e in first}) == 300


def test_arith_final_answer_equals_the_result_recomputed_from_the_question():
    examples = generate_arith(500, seed=0)
    for e in examples:
        assert e.answer.endswith(f"#### {e.gold}") and e.task == "arith" and e.context == ""
        assert int(e.gold) == _solve(e.question), e.question
        for a, op, b, c in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", e.answer):
            assert eval(f"{a} {op} {b}") == int(c), e.answer  # every worked step is right
    operations = {len(re.findall(r" [-+*/] ", e.answer)) for e in examples}
    assert operations == {1, 2, 3}


def test_twohop_answer_is_the_context_span_the_two_facts_lead_to():
    examples = generate_twohop(500, seed=0)
    with_distractor = 0
    for e in examples:
        paragraphs = e.context.split("\n")
        assert 2 <= len(paragraphs) <= 4 and e.answer == e.gold and e.task == "twohop"
        person = re.search(r"[A-Z][a-z]+ [A-Z][a-z]+", e.question.replace("In which", "in which")).group()
        (fact,) = [p for p in paragraphs if p.startswith(person + " ")]
        bridge = re.search(r" (?:in|for) ([A-Z].+)\.$", fact).group(1)
        (second,) = [p for p in paragraphs if p.startswith(bridge + " ")]
        assert second.endswith(f" {e.answer}.") and e.answer in e.context
        with_distractor += len(paragraphs) == 4
    assert with_distractor > 50  # another chain with another answer sits in many contexts


def test_gsm8k_jsonl_fixture_loads_with_gold_numbers():
    examples = load_gsm8k(FIXTURES / "gsm8k_tiny.jsonl")
    assert [e.gold for e in examples] == ["20", "1200", "3.25"]  # blank line skipped, comma dropped
    assert examples[1].question.startswith("A farm sells 3 crates") and examples[1].answer.endswith("#### 1,200")
    assert {e.task for e in examples} == {"arith"} and {e.context for e in examples} == {""}


def test_hotpotqa_json_fixture_loads_context_one_paragraph_per_line():
    first, second = load_hotpotqa(FIXTURES / "hotpotqa_tiny.json")
    assert first.context.split("\n") == [
        "Mara Voss: Mara Voss is a painter. She was born in Keltown.",
        "Keltown: Keltown is a city in Orlandia.",
        "Brisk River: The Brisk River flows through Dunmoor.",
    ]
    assert (first.gold, second.gold, second.task) == ("Orlandia", "no", "twohop")


@pytest.mark.parametrize(
    ("load", "name", "where"),
    [(load_gsm8k, "gsm8k_malformed.jsonl", "line 3"), (load_hotpotqa, "hotpotqa_malformed.json", "index 1")],
)
def test_malformed_row_error_names_file_and_row(load, name, where):
    with pytest.raises(ValueError, match=rf"{name}: {where}: "):
        load(FIXTURES / name)


def test_invalid_json_line_and_missing_gold_are_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl: line 2: not valid JSON"):
        load_gsm8k(bad)
    no_gold = tmp_path / "no_gold.jsonl"
    no_gold.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2", "answer": "the answer is 4"}\n')
    with pytest.raises(ValueError, match="no_gold.jsonl: line 2: answer holds no GSM8K '#### N' gold"):
        load_gsm8k(no_gold)


def test_gsm8k_gold_is_the_scorers_first_hash_number_as_the_official_grader_reads_it(tmp_path):
    two = tmp_path / "two.jsonl"
    two.write_text('{"question": "q", "answer": "so #### 12 and later #### 13"}\n')
    (example,) = load_gsm8k(two)
    assert example.gold == "12"  # the first '#### ', not the last
    assert gsm8k_correct("#### 12", example.answer) and not gsm8k_correct("#### 13", example.answer)


def test_hub_name_offline_says_the_hub_is_unreachable_and_to_pass_a_file():
    with pytest.raises(RuntimeError, match=r"(?s)dataset hub: it is unreachable.*Pass a local file"):
        load_gsm8k("gsm8k", offline=True)


def test_normalise_masks_numbers_case_and_punctuation():
    assert normalise("Ada has 12 apples, buys 3.5 more!") == normalise("ada HAS 7 apples buys 1,000 more")
    assert normalise("Ada has 12 apples") != normalise("Ben has 12 apples")


@pytest.mark.parametrize("generate", [generate_arith, generate_twohop])
def test_split_is_exact_seeded_and_shares_no_question(generate):
    examples = generate(600, seed=3) + generate(200, seed=4)  # a second seed repeats some questions
    splits = split_disjoint(examples, n_val=80, n_test=100, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 620, "val": 80, "test": 100}
    assert splits == split_disjoint(examples, n_val=80, n_test=100, seed=0)
    assert splits["test"] != split_disjoint(examples, n_val=80, n_test=100, seed=1)["test"]
    keys = {s: [normalise(e.question) for e in v] for s, v in splits.items()}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        for x in keys[a]:
            assert not any(_contained(x, y) or _contained(y, x) for y in keys[b]), x


def test_split_keeps_planted_duplicates_together():
    """Rows 0/1 differ only in numbers, case and punctuation, row 2 lies inside row 3, rows 4/5
    differ in their last words (shingle-linked): each pair must land on one side, and over
    seeds every pair must also reach val or test (else keeping it together proves nothing)."""
    examples = load_gsm8k(FIXTURES / "planted_duplicates.jsonl")
    pairs, held_out = [(0, 1), (2, 3), (4, 5)], set()
    for seed in range(30):
        splits = split_disjoint(examples, n_val=3, n_test=3, seed=seed)
        side = {examples.index(e): s for s, v in splits.items() for e in v}
        for a, b in pairs:
            assert side[a] == side[b], (seed, a, b, side)
            if side[a] != "train":
                held_out.add((a, b))
    assert held_out == set(pairs)


def test_split_refuses_when_distinct_questions_cannot_fill_val_and_test():
    examples = load_gsm8k(FIXTURES / "planted_duplicates.jsonl")[:2]  # one duplicate pair
    with pytest.raises(ValueError, match="must be >= 0 and leave train"):
        split_disjoint(examples, n_val=1, n_test=1, seed=0)
    examples += load_gsm8k(FIXTURES / "planted_duplicates.jsonl")[6:7]  # 3 rows, 2 distinct questions
    with pytest.raises(ValueError, match="too few distinct questions"):
        split_disjoint(examples, n_val=1, n_test=1, seed=0)


def test_lm_corpus_puts_context_question_anchor_answer_in_order():
    arith, twohop = generate_arith(1, seed=0)[0], generate_twohop(1, seed=0)[0]
    a_text, t_text = lm_corpus([arith, twohop])
    assert a_text == f"Question: {arith.question}\n{ANCHOR}{arith.answer}"
    assert t_text == f"Context: {twohop.context}\nQuestion: {twohop.question}\n{ANCHOR}{twohop.answer}"
    assert prompt(twohop).endswith("Answer: ") and twohop.answer not in prompt(twohop).split("Question:")[1]


def test_tokenizers_round_trip_differ_and_know_only_train_symbols():
    splits = split_disjoint(generate_arith(400, seed=0) + generate_twohop(400, seed=0), 50, 50, seed=0)
    train, test = lm_corpus(splits["train"]), lm_corpus(splits["test"])
    char, word = build_tokenizer("char", train), build_tokenizer("word", train)
    for tok in (char, word):
        assert tok.token_to_id(PAD) == 0
        for text in test:  # held-out texts of seen symbols decode to exactly themselves
            assert tok.decode(tok.encode(text).ids) == text
    assert word.encode("Question: Mia has 1234 pears.").tokens == [
        "Question",
        ":",
        "▁Mia",
        "▁has",
        "▁",
        "1",
        "2",
        "3",
        "4",
        "▁pears",
        ".",
    ]
    assert char.encode("§").tokens == [UNK] and word.encode("Zyzzyva").tokens == [UNK]
    assert 30 < char.get_vocab_size() < 100 < word.get_vocab_size()
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'"):
        build_tokenizer("bpe", train)

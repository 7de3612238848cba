"""The bridge scorers on fixed strings: GSM8K official vs lenient extraction, SQuAD EM/F1, and
the rule that an invalid answer never scores (the source's "[invalid]" == "[invalid]" bug)."""

import pytest

from studies.bridge.scorers import (
    canonical_number,
    exact_match,
    f1,
    gsm8k_correct,
    gsm8k_lenient,
    gsm8k_official,
    score_batch,
    squad_normalize,
)


def test_official_reads_the_number_after_hashes_in_canonical_form():
    assert gsm8k_official("so 600 + 400 = 1,000\n#### 1,000") == "1000"
    assert gsm8k_official("#### 3.0") == "3"
    assert gsm8k_official("#### -0.50") == "-0.5"
    assert gsm8k_correct("#### 1,000", "1000")
    assert gsm8k_correct("#### 3.0", "Natalia sold 3 clips.\n#### 3")


def test_official_takes_the_first_hashes_like_grade_school_math():
    """openai/grade_school_math uses ANS_RE.search: text generated after the answer cannot change it."""
    assert gsm8k_official("#### 5\nQuestion: ... #### 6") == "5"


def test_official_needs_hashes_lenient_takes_the_last_number():
    text = "I think 3 apples, so the answer is 5"
    assert gsm8k_official(text) is None
    assert gsm8k_lenient(text) == "5"
    assert not gsm8k_correct(text, "5")
    assert gsm8k_correct(text, "5", lenient=True)
    assert gsm8k_official("####5") is None  # the official regex wants "#### " with its space


def test_invalid_never_equals_invalid():
    assert not gsm8k_correct("no number here", "no number either")
    assert not gsm8k_correct("no number here", "no number either", lenient=True)
    assert not gsm8k_correct("[invalid]", "[invalid]")
    assert not gsm8k_correct(None, None)
    assert not gsm8k_correct("#### .", "#### .")  # the regex matches "." but it is no number
    assert exact_match("[invalid]", "[invalid]") == 0.0
    assert f1("[invalid]", "[invalid]") == 0.0
    assert exact_match("", "") == 0.0
    assert exact_match("the", "a") == 0.0  # both normalise to nothing
    assert exact_match(None, "Paris") == 0.0


def test_canonical_number_rejects_non_numbers():
    assert canonical_number("1.2.3") is None
    assert canonical_number("-") is None
    assert canonical_number("nan") is None
    assert canonical_number("1,234,567.000") == "1234567"


def test_squad_normalisation_drops_articles_punctuation_and_case():
    assert squad_normalize("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"
    assert squad_normalize("An apple a day") == "apple day"
    assert exact_match("the Eiffel Tower.", "Eiffel  tower") == 1.0
    assert exact_match("Eiffel Tower", "Paris") == 0.0


def test_f1_partial_overlap_by_hand():
    # pred tokens: cat sat on mat (4); gold: cat on hat (3); common: cat, on → P 2/4, R 2/3, F1 4/7
    assert f1("the cat sat on the mat", "a cat on a hat") == pytest.approx(4 / 7)
    assert f1("Paris", "paris") == 1.0
    assert f1("London", "Paris") == 0.0


def test_f1_empty_prediction_does_not_score():
    assert f1("", "") == 0.0
    assert f1("", "Paris") == 0.0
    assert f1("Paris", "") == 0.0


def test_score_batch_gsm8k_labels_lenient_as_not_official():
    preds = ["#### 5", "the answer is 5", "#### 7", None]
    golds = ["5", "5", "8", "[invalid]"]
    assert score_batch(preds, golds, "gsm8k") == {
        "n": 4,
        "acc_official": 0.25,
        "acc_lenient_not_official": 0.5,
        "invalid_official": 0.5,
    }


def test_score_batch_two_hop_em_f1():
    preds = ["Paris", "the city of Paris", "", "[invalid]"]
    golds = ["paris", "Paris", "", "[invalid]"]
    out = score_batch(preds, golds, "two_hop")
    assert out["n"] == 4
    assert out["em"] == 0.25
    assert out["f1"] == pytest.approx((1 + 0.5) / 4)  # "city of paris" vs "paris": P 1/3, R 1 → 0.5
    assert out["invalid"] == 0.5


def test_score_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="task 'hotpot'"):
        score_batch(["a"], ["a"], "hotpot")
    with pytest.raises(ValueError, match="2 predictions but 1 golds"):
        score_batch(["a", "b"], ["a"], "two_hop")
    with pytest.raises(ValueError, match="empty batch"):
        score_batch([], [], "gsm8k")

"""Unified social credit codes (统一社会信用代码, GB 32100-2015): real codes, corrupted codes, and
properties of the check character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.enterprises.uscc import (
    ALPHABET,
    WEIGHTS,
    InvalidUSCC,
    check_character,
    is_valid_uscc,
    make_uscc,
    normalize_uscc,
)

# Codes of well-known enterprises as published in the National Enterprise Credit Information
# Publicity System (国家企业信用信息公示系统); each passes the GB 32100-2015 check.
REAL = [
    "91350100M000100Y43",  # a widely cited public example (division 350100, 福州市)
    "914403001922038216",  # 华为技术有限公司
    "91440300708461136T",  # 深圳市腾讯计算机系统有限公司
    "91330100799655058B",  # 阿里巴巴（中国）有限公司
    "91110000802100433B",  # 百度在线网络技术（北京）有限公司
    "91110108551385082Q",  # 小米科技有限责任公司
    "91440300192317458F",  # 比亚迪股份有限公司
    "91110000710925462X",  # 中国石油天然气股份有限公司
    "91330428MAPE7MH831",  # the demo county's enterprise #1 (seeds), made by make_uscc
]
FORBIDDEN = "IOSVZ"


def test_alphabet_and_weights():
    assert len(ALPHABET) == 31 and not set(FORBIDDEN) & set(ALPHABET)
    assert set(ALPHABET) == set("0123456789ABCDEFGHJKLMNPQRTUWXY")
    assert tuple(pow(3, i, 31) for i in range(17)) == WEIGHTS


@pytest.mark.parametrize("code", REAL)
def test_real_codes_are_valid(code):
    assert is_valid_uscc(code)
    assert normalize_uscc(code) == code
    assert check_character(code[:17]) == code[17]


@pytest.mark.parametrize("code", REAL)
def test_lower_case_and_spaces_are_normalised(code):
    assert normalize_uscc(code.lower()) == code
    assert normalize_uscc(f"  {code.lower()}\t") == code


@pytest.mark.parametrize("code", REAL)
@pytest.mark.parametrize("position", range(18))
def test_one_character_changed_is_detected(code, position):
    for ch in ALPHABET:
        if ch == code[position]:
            continue
        corrupted = code[:position] + ch + code[position + 1:]
        assert not is_valid_uscc(corrupted), corrupted


def test_check_character_example():
    # C18 = 31 - (Σ Ci·Wi mod 31), with 31 written as 0
    first17 = "91350100M000100Y4"
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    assert check_character(first17) == ALPHABET[(31 - total % 31) % 31] == "3"


@pytest.mark.parametrize("code", ["", "9135010", "91350100M000100Y4", "91350100M000100Y433", "9" * 30])
def test_wrong_length(code):
    with pytest.raises(InvalidUSCC, match="18"):
        normalize_uscc(code)
    assert not is_valid_uscc(code)


@pytest.mark.parametrize("letter", FORBIDDEN)
@pytest.mark.parametrize("position", [0, 1, 8, 12, 17])
def test_forbidden_letters(letter, position):
    code = REAL[0]
    bad = code[:position] + letter + code[position + 1:]
    with pytest.raises(InvalidUSCC, match="非法字符"):
        normalize_uscc(bad)
    with pytest.raises(InvalidUSCC):
        normalize_uscc(bad.lower())


@pytest.mark.parametrize("code", ["91350100M000100Y4-", "9135０100M000100Y43", "91350100M000100Y4 ", "91350100M000100Y4é"])
def test_other_characters(code):
    assert not is_valid_uscc(code)


def test_division_code_must_be_digits():
    first17 = "91A50100M000100Y4"
    code = first17 + check_character(first17)  # right check character, letter in the division code
    with pytest.raises(InvalidUSCC, match="行政区划"):
        normalize_uscc(code)


@pytest.mark.parametrize("value", [None, 91350100, b"91350100M000100Y43", ["91350100M000100Y43"]])
def test_non_strings(value):
    with pytest.raises(InvalidUSCC):
        normalize_uscc(value)
    assert not is_valid_uscc(value)


@pytest.mark.parametrize("first17", ["", "9135010", "91350100M000100Y43", "91350100M000100I4"])
def test_check_character_needs_17_alphabet_characters(first17):
    with pytest.raises(InvalidUSCC):
        check_character(first17)


def test_check_digit_error_message_names_expected():
    with pytest.raises(InvalidUSCC, match="应为3"):
        normalize_uscc("91350100M000100Y44")


def test_invalid_uscc_is_a_value_error():
    assert issubclass(InvalidUSCC, ValueError)


# --------------------------------------------------------------------------- properties

alphabet_char = st.sampled_from(ALPHABET)
parts = st.tuples(alphabet_char, alphabet_char, st.text("0123456789", min_size=6, max_size=6),
                  st.text(ALPHABET, min_size=9, max_size=9))


@settings(max_examples=300, deadline=None)
@given(parts=parts)
def test_make_uscc_is_always_valid(parts):
    code = make_uscc(*parts)
    assert len(code) == 18
    assert is_valid_uscc(code)
    assert normalize_uscc(code.lower()) == code


@settings(max_examples=300, deadline=None)
@given(parts=parts, position=st.integers(0, 17), data=st.data())
def test_single_substitution_is_always_detected(parts, position, data):
    code = make_uscc(*parts)
    ch = data.draw(alphabet_char.filter(lambda c: c != code[position]))
    assert not is_valid_uscc(code[:position] + ch + code[position + 1:])


@settings(max_examples=300, deadline=None)
@given(parts=parts, position=st.integers(0, 15))
def test_adjacent_transposition_in_the_body_is_detected(parts, position):
    # weights 3^i mod 31 are pairwise distinct, so swapping two different characters among the
    # first 17 always changes the weighted sum
    code = make_uscc(*parts)
    a, b = code[position], code[position + 1]
    swapped = code[:position] + b + a + code[position + 2:]
    assert is_valid_uscc(swapped) == (a == b)


@settings(max_examples=200, deadline=None)
@given(code=st.text(alphabet=ALPHABET + FORBIDDEN + "abc -", min_size=0, max_size=20))
def test_validation_never_crashes(code):
    try:
        normalized = normalize_uscc(code)
    except InvalidUSCC:
        assert not is_valid_uscc(code)
    else:
        assert len(normalized) == 18 and is_valid_uscc(normalized)
        assert check_character(normalized[:17]) == normalized[17]

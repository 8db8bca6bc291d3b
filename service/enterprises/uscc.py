"""Unified social credit code (统一社会信用代码) per GB 32100-2015.

Structure (18 characters): registration authority (1) + organisation type (1) + administrative
division code (6 digits, GB/T 2260) + organisation code (9) + check character (1). Characters come
from the 31-symbol alphabet ``0-9 A-H J-N P-R T U W-Y`` (no I, O, S, V, Z). The check character is
``C18 = 31 - (Σ Ci·Wi mod 31)`` with weights ``Wi = 3^(i-1) mod 31``; a result of 31 is written 0.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


class InvalidUSCC(ValueError):
    """The code is not a valid GB 32100-2015 unified social credit code; ``str()`` says why (Chinese)."""


def check_character(first17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 characters.

    Raises:
        InvalidUSCC: ``first17`` is not 17 characters of the code alphabet.
    """
    if len(first17) != 17 or any(ch not in _VALUE for ch in first17):
        raise InvalidUSCC("前17位须为代码字符集中的字符")
    total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def normalize_uscc(code: str) -> str:
    """Validate ``code`` and return it upper-cased and stripped.

    Raises:
        InvalidUSCC: wrong length, a character outside the alphabet, a non-digit division code, or
            a check character that does not match.
    """
    if not isinstance(code, str):
        raise InvalidUSCC("统一社会信用代码必须是字符串")
    code = code.strip().upper()
    if len(code) != 18:
        raise InvalidUSCC(f"统一社会信用代码应为18位，实际为{len(code)}位")
    bad = [ch for ch in code if ch not in _VALUE]
    if bad:
        raise InvalidUSCC(f"含有非法字符：{''.join(dict.fromkeys(bad))}")
    if not code[2:8].isdigit():
        raise InvalidUSCC("第3-8位行政区划码应为数字")
    expected = check_character(code[:17])
    if code[17] != expected:
        raise InvalidUSCC(f"校验位错误：应为{expected}，实际为{code[17]}")
    return code


def is_valid_uscc(code: str) -> bool:
    """True when :func:`normalize_uscc` accepts ``code``."""
    try:
        normalize_uscc(code)
    except InvalidUSCC:
        return False
    return True


def make_uscc(authority: str, org_type: str, division: str, org_code: str) -> str:
    """Build a valid code from its parts (used by seeds and tests).

    Args:
        authority: 1 character (e.g. ``9`` = 工商).
        org_type: 1 character (e.g. ``1`` = 企业).
        division: 6-digit administrative division code.
        org_code: 9 characters of the code alphabet.
    """
    first17 = f"{authority}{org_type}{division}{org_code}".upper()
    return first17 + check_character(first17)

"""The Unified Social Credit Code (统一社会信用代码, GB 32100-2015): format and both check
characters (domain.md §3).

A code can be *malformed* (wrong length or characters: rejected everywhere) or well-formed with
a failing check character. Some genuine early pilot-region codes fail the checksum, so a
registry row with such a code is kept and flagged for staff, not refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {char: index for index, char in enumerate(USCC_CHARSET)}
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]  # 1, 3, 9, 27, 19, 26, 16, 17, 20, ...
_ORG_VALUE = {char: int(char, 36) for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
_SHAPE = re.compile(rf"[{USCC_CHARSET}]{{2}}[0-9]{{6}}[{USCC_CHARSET}]{{10}}")


def normalize_uscc(value: str) -> str:
    return (value or "").strip().upper()


def uscc_check_character(first17: str) -> str:
    total = sum(_USCC_VALUE[char] * weight for char, weight in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def organisation_code_check_character(first8: str) -> str:
    total = sum(_ORG_VALUE[char] * weight for char, weight in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


@dataclass(frozen=True)
class UsccCheck:
    code: str
    well_formed: bool
    organisation_check_ok: bool = False
    check_ok: bool = False

    @property
    def valid(self) -> bool:
        return self.well_formed and self.organisation_check_ok and self.check_ok

    @property
    def problem(self) -> str:
        """A sentence for staff, empty when the code is valid."""
        if not self.well_formed:
            return str(_("not a well-formed 18-character USCC"))
        problems = []
        if not self.organisation_check_ok:
            problems.append(str(_("organisation-code check character (position 17) does not match")))
        if not self.check_ok:
            problems.append(str(_("check character (position 18) does not match")))
        return "; ".join(problems)


def check_uscc(value: str) -> UsccCheck:
    code = normalize_uscc(value)
    if len(code) != 18 or not _SHAPE.fullmatch(code):
        return UsccCheck(code, well_formed=False)
    return UsccCheck(
        code,
        well_formed=True,
        organisation_check_ok=organisation_code_check_character(code[8:16]) == code[16],
        check_ok=uscc_check_character(code[:17]) == code[17],
    )


def validate_uscc_format(value: str) -> None:
    """Model/form validator: rejects malformed codes; a checksum failure is left to the
    data-quality flag (see ``Organisation.uscc_checksum_ok``)."""
    if not check_uscc(value).well_formed:
        raise ValidationError(
            _(
                "%(value)s is not a well-formed USCC (18 characters of 0-9 and A-Y without I, O, S, V, Z; positions 3-8 an area code)."
            ),
            params={"value": value},
            code="uscc_format",
        )


def validate_uscc(value: str) -> None:
    """Strict validator: format and both check characters."""
    result = check_uscc(value)
    if not result.valid:
        raise ValidationError(
            _("%(value)s is not a valid USCC: %(problem)s."),
            params={"value": value, "problem": result.problem},
            code="uscc_invalid",
        )

"""The USCC (GB 32100-2015, domain.md §3): malformed codes are refused everywhere; a well-formed
code with a failing check character is kept and flagged (pilot-region codes do fail)."""

import pytest
from django.core.exceptions import ValidationError

from enterprises.models import Organisation
from enterprises.validators import (
    check_uscc,
    organisation_code_check_character,
    uscc_check_character,
    validate_uscc,
    validate_uscc_format,
)

PUBLIC_VALID = [
    "91110108551385082Q",  # Xiaomi
    "914403001922038216",  # Huawei
    "91310000132260250X",  # SAIC Motor (organisation check 11 -> "0")
    "12100000425006133D",  # East China Normal University (a public institution, 1...)
]
PILOT_CHECKSUM_ONLY = ["91350100M0001TGQXM", "91350211M0000XUF46", "91350203M0001FUE2P"]
FABRICATED = ["91440300770885628T", "91110108717809965C", "9144030071526726X7"]
MALFORMED = [
    "",
    "9111010855138508",  # 16 characters
    "91110108551385082",  # 17 characters
    "91110108551385082QQ",  # 19 characters
    "91110108551385082I",  # I is not in the character set
    "9111010855138508OQ",  # O
    "91110108S51385082Q",  # S
    "V1110108551385082Q",  # V
    "9Z110108551385082Q",  # Z
    "91A10108551385082Q",  # area code (positions 3-8) must be digits
    "9111010H551385082Q",
    "91110108 51385082Q",  # inner space
    "91110108-551385082",  # punctuation
    "９１１１０１０８５５１３８５０８２Q",  # full-width digits
]


@pytest.mark.parametrize("code", PUBLIC_VALID)
def test_public_codes_pass_every_check(code):
    result = check_uscc(code)
    assert result.well_formed
    assert result.organisation_check_ok
    assert result.check_ok
    assert result.valid
    assert result.problem == ""
    validate_uscc(code)
    validate_uscc_format(code)


@pytest.mark.parametrize("code", PILOT_CHECKSUM_ONLY)
def test_pilot_codes_are_well_formed_and_fail_only_the_final_check_character(code):
    result = check_uscc(code)
    assert result.well_formed
    assert result.organisation_check_ok
    assert not result.check_ok
    assert not result.valid
    assert result.problem == "check character (position 18) does not match"
    validate_uscc_format(code)  # kept and flagged, not refused
    with pytest.raises(ValidationError) as caught:
        validate_uscc(code)
    assert caught.value.code == "uscc_invalid"


@pytest.mark.parametrize("code", FABRICATED)
def test_fabricated_codes_fail_the_strict_check(code):
    result = check_uscc(code)
    assert result.well_formed
    assert not result.valid
    with pytest.raises(ValidationError) as caught:
        validate_uscc(code)
    assert caught.value.code == "uscc_invalid"
    assert result.problem in caught.value.messages[0]


def test_the_problem_names_every_failing_check_character():
    both = check_uscc("91440300770885628T")
    assert not both.organisation_check_ok and not both.check_ok
    assert both.problem == (
        "organisation-code check character (position 17) does not match; check character (position 18) does not match"
    )
    final_only = check_uscc("9144030071526726X7")
    assert final_only.organisation_check_ok and not final_only.check_ok
    assert final_only.problem == "check character (position 18) does not match"


@pytest.mark.parametrize("code", MALFORMED)
def test_malformed_codes_are_refused_by_the_format_validator(code):
    result = check_uscc(code)
    assert not result.well_formed
    assert not result.valid
    assert result.problem == "not a well-formed 18-character USCC"
    with pytest.raises(ValidationError) as caught:
        validate_uscc_format(code)
    assert caught.value.code == "uscc_format"
    with pytest.raises(ValidationError):
        validate_uscc(code)


@pytest.mark.parametrize("raw", ["91110108551385082q", "  91110108551385082Q\t", "\n91310000132260250x "])
def test_lower_case_and_surrounding_whitespace_are_normalised(raw):
    result = check_uscc(raw)
    assert result.code == raw.strip().upper()
    assert result.valid
    validate_uscc(raw)


def test_none_is_malformed_not_a_crash():
    assert check_uscc(None).well_formed is False


@pytest.mark.parametrize(
    ("first8", "check"),
    [("55138508", "2"), ("19220382", "1"), ("13226025", "0"), ("71526726", "X")],
)
def test_organisation_code_check_character_maps_ten_to_x_and_eleven_to_zero(first8, check):
    assert organisation_code_check_character(first8) == check


def test_uscc_check_character_of_a_public_code():
    assert uscc_check_character("91110108551385082") == "Q"
    assert uscc_check_character("12100000425006133") == "D"


def test_the_model_field_accepts_a_pilot_code_and_refuses_a_malformed_one():
    field = Organisation._meta.get_field("uscc")
    field.run_validators("91350100M0001TGQXM")
    with pytest.raises(ValidationError):
        field.run_validators("91110108551385082I")

"""Small factories for tests: plain functions with defaults that make valid objects, so that a
test states only what matters to it."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from enterprises.models import Organisation, PortalAccount, Provider
from enterprises.validators import organisation_code_check_character, uscc_check_character

_counter = itertools.count(1)


def make_uscc(n: int | None = None, *, region: str = "340100") -> str:
    """A valid USCC (both check characters right) that differs for each ``n``."""
    n = next(_counter) if n is None else n
    body8 = f"{n:08d}"
    org = body8 + organisation_code_check_character(body8)
    first17 = "91" + region + org
    return first17 + uscc_check_character(first17)


def make_organisation(**overrides) -> Organisation:
    n = next(_counter)
    values = {
        "uscc": make_uscc(n),
        "name": f"合肥测试科技有限公司{n}",
        "legal_representative": f"张{n}",
        "registered_address": f"合肥市高新区创新大道{n}号",
        "region_code": "340100",
        "registration_date": dt.date(2020, 1, 1),
        "registered_capital": Decimal("1000000.00"),
        "paid_in_capital": Decimal("500000.00"),
        "industry_id": "I6513",
        "main_business": "应用软件开发",
        "social_insured_employees": 20,
        "rd_staff": 8,
        "core_team_city": "合肥",
        "contact_phone": f"1380000{n:04d}",
        "contact_email": f"contact{n}@example.cn",
        "bank_account": f"6222{n:012d}",
    }
    values.update(overrides)
    return Organisation.objects.create(**values)


def make_provider(*, whitelisted: bool = True, **org_overrides) -> Provider:
    organisation = make_organisation(industry_id="I6450", **org_overrides)
    return Provider.objects.create(organisation=organisation, whitelisted=whitelisted)


def make_user(username: str | None = None, *, staff: bool = False, groups: tuple[str, ...] = (), **extra):
    username = username or f"user{next(_counter)}"
    user = get_user_model().objects.create_user(username=username, password="pw-123456", is_staff=staff, **extra)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


def make_portal_user(
    organisation: Organisation, *, role: str = PortalAccount.Role.ENTERPRISE, username: str | None = None
):
    user = make_user(username)
    PortalAccount.objects.create(user=user, organisation=organisation, role=role)
    return user

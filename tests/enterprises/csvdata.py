"""Building import files in tests: rows as dicts (or raw lists, for malformed rows) written with
the ``csv`` module, so a test states only the cells that matter to it."""

from __future__ import annotations

import csv
import io

from tests.factories import make_uscc

REGISTRY_HEADER = [
    "uscc",
    "name",
    "legal_representative",
    "registered_address",
    "region_code",
    "registration_date",
    "registered_capital",
    "paid_in_capital",
    "industry_code",
    "main_business",
    "social_insured_employees",
    "rd_staff",
    "core_team_city",
    "contact_phone",
    "contact_email",
    "bank_account",
]

PROVIDER_HEADER = ["uscc", "name", "region_code", "whitelisted"]


def registry_row(n: int, **overrides: str) -> dict[str, str]:
    """A valid registry row for organisation number ``n`` (a valid USCC from ``make_uscc``)."""
    row = {
        "uscc": make_uscc(n),
        "name": f"合肥算力测试有限公司{n}",
        "legal_representative": f"李{n}",
        "registered_address": f"合肥市蜀山区望江西路{n}号",
        "region_code": "340100",
        "registration_date": "2019-06-18",
        "registered_capital": "2000000.00",
        "paid_in_capital": "1500000.50",
        "industry_code": "I6513",
        "main_business": "人工智能应用软件开发",
        "social_insured_employees": "35",
        "rd_staff": "12",
        "core_team_city": "合肥",
        "contact_phone": f"0551-6{n:07d}",
        "contact_email": f"ops{n}@example.cn",
        "bank_account": f"6217 0000 {n:08d}",
    }
    row.update(overrides)
    return row


def provider_row(organisation, **overrides: str) -> dict[str, str]:
    row = {
        "uscc": organisation.uscc,
        "name": organisation.name,
        "region_code": organisation.region_code,
        "whitelisted": "true",
    }
    row.update(overrides)
    return row


def to_csv(rows, *, header: list[str] | None = None, encoding: str = "utf-8") -> bytes:
    """CSV bytes: ``header`` (default: the first dict row's keys) then each row; a dict row is
    written in header order, a list row as it is."""
    if header is None:
        header = list(rows[0].keys())
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[name] for name in header] if isinstance(row, dict) else row)
    return buffer.getvalue().encode(encoding)

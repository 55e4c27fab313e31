"""The registry and provider imports (design.md, import formats). Both upsert by USCC, validate
every row before writing, and write all or nothing (``core.csvimport``)."""

from __future__ import annotations

from core import csvimport as c
from core.csvimport import Column, ParsedRow, ProblemList
from enterprises.models import IndustryClass, Organisation, Provider
from enterprises.validators import check_uscc


def uscc_cell(value: str) -> str:
    result = check_uscc(value)
    if not result.well_formed:
        raise c.CellError(f"{value!r} is not a well-formed USCC")
    return result.code


class RegistryImport(c.CsvImport):
    """The registry extract. A USCC that fails only its check characters is imported with a
    data-quality flag for staff; a malformed one fails the import."""

    label = "registry"
    model = Organisation
    key = "uscc"
    columns = [
        Column("uscc", uscc_cell),
        Column("name", c.text(200)),
        Column("legal_representative", c.text(100)),
        Column("registered_address", c.text(300)),
        Column("region_code", c.text(6, pattern=r"[0-9]{6}", message="is not a six-digit region code")),
        Column("registration_date", c.date()),
        Column("registered_capital", c.decimal(2, max_digits=16)),
        Column("paid_in_capital", c.decimal(2, max_digits=16)),
        Column("industry_code", c.text(5)),
        Column("main_business", c.text(), required=False),
        Column("social_insured_employees", c.integer(minimum=0)),
        Column("rd_staff", c.integer(minimum=0)),
        Column("core_team_city", c.text(100), required=False),
        Column(
            "contact_phone", c.text(30, pattern=r"[0-9+\-() ]{5,30}", message="is not a phone number"), required=False
        ),
        Column(
            "contact_email",
            c.text(254, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+", message="is not an e-mail address"),
            required=False,
        ),
        Column(
            "bank_account",
            c.text(40, pattern=r"[0-9 \-]{6,40}", message="is not a bank account number"),
            required=False,
        ),
    ]

    def clean_rows(self, rows: list[ParsedRow], problems: ProblemList) -> list[tuple[int, dict]]:
        codes = {row.values["industry_code"] for row in rows if row.values["industry_code"]}
        levels = dict(IndustryClass.objects.filter(code__in=codes).values_list("code", "level"))
        cleaned = []
        for row in rows:
            v = row.values
            if v["industry_code"] is not None:
                level = levels.get(v["industry_code"])
                if level is None:
                    problems.add(
                        f"{v['industry_code']!r} is not a GB/T 4754-2017 code", line=row.line, column="industry_code"
                    )
                elif level != 4:
                    problems.add(
                        f"{v['industry_code']!r} is not a class (4-digit) code", line=row.line, column="industry_code"
                    )
            if (
                v["paid_in_capital"] is not None
                and v["registered_capital"] is not None
                and v["paid_in_capital"] > v["registered_capital"]
            ):
                problems.add("paid-in capital exceeds registered capital", line=row.line, column="paid_in_capital")
            if any(v[column.name] is None for column in self.columns if column.required):
                continue  # its problems are already reported
            check = check_uscc(v["uscc"])
            cleaned.append(
                (
                    row.line,
                    {
                        "uscc": v["uscc"],
                        "name": v["name"],
                        "legal_representative": v["legal_representative"],
                        "registered_address": v["registered_address"],
                        "region_code": v["region_code"],
                        "registration_date": v["registration_date"],
                        "registered_capital": v["registered_capital"],
                        "paid_in_capital": v["paid_in_capital"],
                        "industry_id": v["industry_code"],
                        "main_business": v["main_business"] or "",
                        "social_insured_employees": v["social_insured_employees"],
                        "rd_staff": v["rd_staff"],
                        "core_team_city": v["core_team_city"] or "",
                        "contact_phone": v["contact_phone"] or "",
                        "contact_email": v["contact_email"] or "",
                        "bank_account": v["bank_account"] or "",
                        "uscc_checksum_ok": check.valid,
                        "data_quality_note": "" if check.valid else f"USCC: {check.problem}",
                    },
                )
            )
        return cleaned

    def after_write(self, summary, cleaned):
        flagged = sum(1 for _line, values in cleaned if not values["uscc_checksum_ok"])
        if flagged:
            summary.extra["flagged for USCC data quality"] = flagged


class ProviderImport(c.CsvImport):
    """Providers: each must already be in the registry. Upsert by USCC; the name and region
    columns must agree with the registry record (a mismatch usually means a wrong code)."""

    label = "providers"
    model = Provider
    key = "organisation_id"
    columns = [
        Column("uscc", uscc_cell),
        Column("name", c.text(200)),
        Column("region_code", c.text(6, pattern=r"[0-9]{6}", message="is not a six-digit region code")),
        Column("whitelisted", c.boolean()),
    ]

    def check_duplicate_keys(self, rows, problems):
        seen = {}
        for row in rows:
            uscc = row.values["uscc"]
            if uscc in seen:
                problems.add(f"duplicate of line {seen[uscc]}", line=row.line, column="uscc")
            elif uscc:
                seen[uscc] = row.line

    def clean_rows(self, rows, problems):
        usccs = {row.values["uscc"] for row in rows if row.values["uscc"]}
        organisations = {org.uscc: org for org in Organisation.objects.filter(uscc__in=usccs)}
        cleaned = []
        for row in rows:
            v = row.values
            if v["uscc"] is None:
                continue
            organisation = organisations.get(v["uscc"])
            if organisation is None:
                problems.add(
                    f"{v['uscc']} is not in the registry; import the registry first", line=row.line, column="uscc"
                )
                continue
            if v["name"] is not None and v["name"] != organisation.name:
                problems.add(
                    f"name {v['name']!r} differs from the registry's {organisation.name!r}",
                    line=row.line,
                    column="name",
                )
            if v["region_code"] is not None and v["region_code"] != organisation.region_code:
                problems.add(
                    f"region {v['region_code']} differs from the registry's {organisation.region_code}",
                    line=row.line,
                    column="region_code",
                )
            if v["whitelisted"] is None:
                continue
            cleaned.append((row.line, {"organisation_id": organisation.pk, "whitelisted": v["whitelisted"]}))
        return cleaned

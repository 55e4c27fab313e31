"""The programme and application imports (design.md, import formats)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.utils import timezone

from core import csvimport as c
from core.audit import audit_record_many
from core.csvimport import Column, ImportSummary
from core.errors import ApplicationError, Problem, ValidationFailed
from coupons.models import Account, Application, Program, RiskBand, normalize_model_name
from coupons.selectors import accelerator_index, cap_used_bulk
from coupons.services.coupons import coupon_issue
from coupons.services.programs import PROGRAM_FIELDS, grant_ceiling, program_create, program_update
from enterprises.imports import uscc_cell
from enterprises.models import Organisation, Provider

CODE = c.text(30, pattern=r"[A-Za-z0-9][A-Za-z0-9_\-]*", message="use letters, digits, - and _")
RATE = c.decimal(3)


def _rate_cell(value: str) -> Decimal:
    rate = RATE(value)
    if rate > 1:
        raise c.CellError(f"{value!r} is above 1 (rates are shares, e.g. 0.20)")
    return rate


class ProgramImport(c.CsvImport):
    """Programmes, upserted by code. A new programme is funded in the ledger; a changed budget
    posts an adjustment (a cut below what is already issued is refused)."""

    label = "programs"
    model = Program
    key = "code"
    columns = [
        Column("code", CODE),
        Column("name", c.text(200)),
        Column("budget", c.decimal(2, minimum=Decimal("0.01"), max_digits=16)),
        Column("rate", _rate_cell),
        Column("domestic_rate", _rate_cell),
        Column("per_enterprise_cap", c.decimal(2, minimum=Decimal("0.01"), max_digits=16)),
        Column("opens", c.date()),
        Column("closes", c.date()),
        Column("validity_days", c.integer(minimum=1, maximum=3660)),
        Column("second_review_amount", c.decimal(2, max_digits=16), required=False, optional_column=True),
        Column("second_review_band", c.choice(RiskBand.values), required=False, optional_column=True),
    ]

    def clean_rows(self, rows, problems):
        cleaned = []
        for row in rows:
            v = row.values
            if v["opens"] and v["closes"] and v["closes"] < v["opens"]:
                problems.add("closes before it opens", line=row.line, column="closes")
            if v["per_enterprise_cap"] and v["budget"] and v["per_enterprise_cap"] > v["budget"]:
                problems.add("the per-enterprise cap exceeds the budget", line=row.line, column="per_enterprise_cap")
            if any(v[column.name] is None for column in self.columns if column.required):
                continue
            values = {name: v[name] for name in ["code", *PROGRAM_FIELDS] if name in v and v[name] is not None}
            cleaned.append((row.line, values))
        return cleaned

    def write(self, cleaned):
        summary = ImportSummary()
        existing = Program.objects.in_bulk([values["code"] for _line, values in cleaned], field_name="code")
        for line, values in self.progress(cleaned, desc="writing", unit="row"):
            program = existing.get(values["code"])
            changed = (
                {name: value for name, value in values.items() if name != "code" and getattr(program, name) != value}
                if program is not None
                else values
            )
            if not changed:
                summary.unchanged += 1
                continue
            try:
                if program is None:
                    program_create(actor=self.actor, **values)
                    summary.created += 1
                else:
                    program_update(program=program, actor=self.actor, **changed)
                    summary.updated += 1
            except ApplicationError as error:
                # A rule of the ledger or the programme refused the row: nothing is written.
                raise ValidationFailed(
                    f"Line {line} cannot be applied; nothing was imported.",
                    details=[
                        Problem(error.message, line=line, column=next(iter(changed)) if len(changed) == 1 else None)
                    ],
                ) from error
        return summary


STATUS_VALUES = [value for value, _label in Application.Status.choices]


class ApplicationImport(c.CsvImport):
    """Bulk and historical applications. Applications are never changed by an import: a
    reference already present must match exactly (then it is unchanged). An approved
    application in a programme whose window has closed is history: the grant is recorded, no
    coupon is issued. In an open programme an approved row issues a live coupon."""

    label = "applications"
    model = Application
    key = "reference"
    columns = [
        Column("reference", c.text(40, pattern=r"[A-Za-z0-9][A-Za-z0-9_\-]*", message="use letters, digits, - and _")),
        Column("uscc", uscc_cell),
        Column("program_code", CODE),
        Column("submitted_at", c.aware_datetime(), required=False),
        Column("provider_uscc", uscc_cell),
        Column("gpu_model", c.text(100)),
        Column("claimed_card_hours", c.decimal(4)),
        Column("claimed_amount", c.decimal(2)),
        Column("scenario", c.choice(Application.Scenario.values)),
        Column("project_summary", c.text(5000)),
        Column("status", c.choice(STATUS_VALUES)),
        Column("granted_amount", c.decimal(2), required=False),
        Column("audit_outcome", c.choice(["fraud", "clean"]), required=False),
    ]

    COMPARED = [
        "organisation_id",
        "program_id",
        "provider_id",
        "accelerator_id",
        "claimed_card_hours",
        "claimed_amount",
        "scenario",
        "project_summary",
        "status",
        "granted_amount",
    ]

    def clean_rows(self, rows, problems):
        organisations = dict(
            Organisation.objects.filter(uscc__in={r.values["uscc"] for r in rows}).values_list("uscc", "pk")
        )
        providers = {
            p.organisation.uscc: p
            for p in Provider.objects.select_related("organisation").filter(
                organisation__uscc__in={r.values["provider_uscc"] for r in rows}
            )
        }
        programs = {p.code: p for p in Program.objects.filter(code__in={r.values["program_code"] for r in rows})}
        accelerators = accelerator_index()
        # Rows already imported are compared in write(); their grants are already counted.
        already = set(
            Application.objects.filter(
                reference__in=[r.values["reference"] for r in rows if r.values["reference"]]
            ).values_list("reference", flat=True)
        )

        today = timezone.localdate()
        granted_by_org_program: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
        live_by_program: dict[int, Decimal] = defaultdict(Decimal)
        last_line: dict[tuple[int, int], int] = {}
        cleaned = []
        for row in rows:
            v, line = row.values, row.line
            ok = not any(v[column.name] is None for column in self.columns if column.required)
            organisation_id = organisations.get(v["uscc"])
            if v["uscc"] and organisation_id is None:
                problems.add(f"{v['uscc']} is not in the registry", line=line, column="uscc")
                ok = False
            provider = providers.get(v["provider_uscc"])
            if v["provider_uscc"] and provider is None:
                problems.add(f"{v['provider_uscc']} is not a provider", line=line, column="provider_uscc")
                ok = False
            program = programs.get(v["program_code"])
            if v["program_code"] and program is None:
                problems.add(f"no programme {v['program_code']}", line=line, column="program_code")
                ok = False
            accelerator = accelerators.get(normalize_model_name(v["gpu_model"] or ""))
            if v["gpu_model"] and accelerator is None:
                problems.add(f"{v['gpu_model']!r} is not a known card model", line=line, column="gpu_model")
                ok = False
            status = v["status"]
            if status and status != Application.Status.DRAFT and v["submitted_at"] is None:
                problems.add(f"a {status} application needs submitted_at", line=line, column="submitted_at")
                ok = False
            if v["submitted_at"] and v["submitted_at"] > timezone.now():
                problems.add("is in the future", line=line, column="submitted_at")
                ok = False
            if status == Application.Status.APPROVED and v["granted_amount"] is None:
                problems.add("an approved application needs granted_amount", line=line, column="granted_amount")
                ok = False
            if status != Application.Status.APPROVED and v["granted_amount"] is not None:
                problems.add(
                    f"only an approved application has a granted amount (status is {status})",
                    line=line,
                    column="granted_amount",
                )
                ok = False
            if not ok:
                continue
            values = {
                "reference": v["reference"],
                "organisation_id": organisation_id,
                "program_id": program.pk,
                "provider_id": provider.pk,
                "accelerator_id": accelerator.pk,
                "claimed_card_hours": v["claimed_card_hours"],
                "claimed_amount": v["claimed_amount"],
                "scenario": v["scenario"],
                "project_summary": v["project_summary"],
                "status": status,
                "granted_amount": v["granted_amount"],
                "submitted_at": v["submitted_at"],
            }
            if status == Application.Status.APPROVED:
                probe = Application(program=program, accelerator=accelerator, claimed_amount=v["claimed_amount"])
                if v["granted_amount"] > grant_ceiling(probe):
                    problems.add(
                        f"granted {v['granted_amount']} exceeds claimed amount × rate ({grant_ceiling(probe)})",
                        line=line,
                        column="granted_amount",
                    )
                    continue
                if v["granted_amount"] <= 0:
                    problems.add("must be positive", line=line, column="granted_amount")
                    continue
                values["historical"] = program.closes < today
                if v["reference"] not in already:
                    key = (organisation_id, program.pk)
                    granted_by_org_program[key] += v["granted_amount"]
                    last_line[key] = line
                    if not values["historical"]:
                        live_by_program[program.pk] += v["granted_amount"]
            cleaned.append((line, {**values, "_outcome": v["audit_outcome"]}))
        used = cap_used_bulk(
            organisation_ids={org for org, _program in granted_by_org_program},
            program_ids={p for _org, p in granted_by_org_program},
        )
        caps = {program.pk: program for program in programs.values()}
        for key, granted in granted_by_org_program.items():
            program = caps[key[1]]
            if granted + used.get(key, Decimal(0)) > program.per_enterprise_cap:
                problems.add(
                    f"grants to this enterprise in {program.code} would exceed the cap of {program.per_enterprise_cap}",
                    line=last_line[key],
                    column="granted_amount",
                )
        for program in programs.values():
            if live_by_program[program.pk] > Account.objects.get(program=program, kind=Account.Kind.BUDGET).balance:
                problems.add(
                    f"live grants of {live_by_program[program.pk]} exceed the remaining budget of {program.code}",
                    line=None,
                    column="granted_amount",
                )
        return cleaned

    def write(self, cleaned):
        from fraud.models import Outcome

        summary = ImportSummary()
        existing = Application.objects.in_bulk(
            [values["reference"] for _line, values in cleaned], field_name="reference"
        )
        conflicts = []
        new = []
        for line, values in cleaned:
            current = existing.get(values["reference"])
            if current is None:
                new.append((line, values))
            elif all(getattr(current, name) == values[name] for name in self.COMPARED):
                summary.unchanged += 1
            else:
                conflicts.append(line)
        if conflicts:
            raise ValidationFailed(
                "Some references are already imported with other values; an import never changes an application.",
                details=[
                    Problem("reference already imported with different values", line=line, column="reference")
                    for line in conflicts
                ],
            )
        now = timezone.now()
        objects = []
        for _line, values in new:
            fields = {k: v for k, v in values.items() if not k.startswith("_")}
            decided = fields["status"] in (Application.Status.APPROVED, Application.Status.REJECTED)
            objects.append(Application(**fields, decided_at=fields["submitted_at"] if decided else None))
        Application.objects.bulk_create(objects, batch_size=1000)  # sets primary keys (PostgreSQL, SQLite ≥ 3.35)
        audit_record_many(actor=self.actor, objs=objects, action="application.import", to_state=lambda app: app.status)
        programs = {p.pk: p for p in Program.objects.filter(pk__in={a.program_id for a in objects})}
        outcomes = []
        for application, (_line, values) in self.progress(
            list(zip(objects, new, strict=True)), desc="writing", unit="row"
        ):
            application.program = programs[application.program_id]
            if application.status == Application.Status.APPROVED and not application.historical:
                coupon_issue(
                    application=application,
                    amount=application.granted_amount,
                    actor=self.actor,
                    # Valid from the recorded decision, so that usage metered since counts.
                    now=application.decided_at or now,
                )
            if values["_outcome"]:
                outcomes.append(
                    Outcome(application=application, verdict=values["_outcome"], source=Outcome.Source.IMPORT)
                )
        Outcome.objects.bulk_create(outcomes)
        summary.created = len(objects)
        summary.extra["live coupons issued"] = sum(1 for a in objects if a.status == "approved" and not a.historical)
        return summary

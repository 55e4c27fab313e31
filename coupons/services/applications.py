"""The enterprise's side of an application: drafting, submitting, withdrawing."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import transaction
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import NotPermitted, Problem, ValidationFailed
from coupons.models import Accelerator, Application, Program
from coupons.selectors import cap_used, open_application_exists
from coupons.services.workflow import transition
from enterprises.models import Organisation, Provider

EDITABLE_FIELDS = [
    "program",
    "provider",
    "accelerator",
    "claimed_card_hours",
    "claimed_amount",
    "scenario",
    "project_summary",
    "contract",
]


def _next_reference(application: Application) -> str:
    return f"{application.program.code}-{application.pk:06d}"


@transaction.atomic
def application_create(
    *,
    organisation: Organisation,
    program: Program,
    provider: Provider,
    accelerator: Accelerator,
    claimed_card_hours: Decimal,
    claimed_amount: Decimal,
    scenario: str,
    project_summary: str,
    contract=None,
    created_by=None,
) -> Application:
    """Create a draft. The checks that matter run at submission."""
    application = Application(
        reference=f"new-{uuid.uuid4().hex}",  # replaced below once the id exists
        organisation=organisation,
        program=program,
        provider=provider,
        accelerator=accelerator,
        claimed_card_hours=claimed_card_hours,
        claimed_amount=claimed_amount,
        scenario=scenario,
        project_summary=project_summary.strip(),
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )
    if contract:
        application.contract = contract
    application.full_clean(exclude=["reference"])
    application.save()
    application.reference = _next_reference(application)
    application.save(update_fields=["reference"])
    audit_record(actor=created_by, obj=application, action="application.create", to_state=application.status)
    return application


@transaction.atomic
def application_update(*, application: Application, actor, **values) -> Application:
    """Change a draft or an application returned for changes."""
    application = Application.objects.select_for_update().get(pk=application.pk)
    if application.status not in (Application.Status.DRAFT, Application.Status.RETURNED):
        raise ValidationFailed(_("Only a draft or an application returned for changes can be edited."))
    for name, value in values.items():
        if name not in EDITABLE_FIELDS:
            raise ValidationFailed(_("%(field)s cannot be changed.") % {"field": name})
        setattr(application, name, value)
    application.full_clean()
    application.save()
    audit_record(
        actor=actor,
        obj=application,
        action="application.edit",
        from_state=application.status,
        to_state=application.status,
        data={"fields": sorted(values)},
    )
    return application


def submission_problems(application: Application, *, today=None) -> list[Problem]:
    """Everything that stops ``application`` from being submitted, each with a clear message."""
    problems = []
    program, organisation, provider = application.program, application.organisation, application.provider
    if not program.is_open(today):
        problems.append(
            Problem(
                _("The programme %(program)s accepts applications from %(opens)s to %(closes)s.")
                % {"program": program.code, "opens": program.opens, "closes": program.closes},
                column="program",
            )
        )
    if not organisation.is_active:
        problems.append(
            Problem(_("%(name)s is not active in the registry.") % {"name": organisation.name}, column="organisation")
        )
    if not provider.whitelisted:
        problems.append(
            Problem(
                _("%(name)s is not a whitelisted provider.") % {"name": provider.organisation.name}, column="provider"
            )
        )
    if provider.organisation_id == organisation.pk:
        problems.append(
            Problem(
                _("Self-built, self-used compute is not subsidised: the provider is the applicant itself."),
                column="provider",
            )
        )
    used = cap_used(organisation_id=organisation.pk, program_id=program.pk, exclude_application_id=application.pk)
    if used >= program.per_enterprise_cap:
        problems.append(
            Problem(
                _("The annual cap of %(cap)s yuan is already used (%(used)s yuan granted).")
                % {"cap": program.per_enterprise_cap, "used": used},
                column="claimed_amount",
            )
        )
    if open_application_exists(
        organisation_id=organisation.pk, program_id=program.pk, provider_id=provider.pk, exclude_id=application.pk
    ):
        problems.append(
            Problem(
                _("There is already an open application to %(program)s with %(provider)s.")
                % {"program": program.code, "provider": provider.organisation.name},
                column="provider",
            )
        )
    if application.claimed_amount <= 0 or application.claimed_card_hours <= 0:
        problems.append(Problem(_("Claim a positive amount and card-hours."), column="claimed_amount"))
    return problems


@transaction.atomic
def application_submit(*, application: Application, actor, today=None) -> Application:
    """Submit a draft (or a returned application). Refuses with every problem at once.
    Scoring is queued after the commit (fraud module)."""
    application = (
        Application.objects.select_for_update(of=("self",))
        .select_related("program", "organisation", "provider__organisation")
        .get(pk=application.pk)
    )
    if application.status not in (Application.Status.DRAFT, Application.Status.RETURNED):
        transition(application, "submit", actor=actor)  # raises the clear "cannot be submitted"
    problems = submission_problems(application, today=today)
    if problems:
        raise ValidationFailed(_("The application cannot be submitted."), details=problems)
    if application.status == Application.Status.RETURNED:
        application.reviews.filter(superseded=False).update(superseded=True)
    transition(application, "submit", actor=actor)
    transaction.on_commit(lambda: _queue_scoring(application.pk))
    return application


def _queue_scoring(application_id: int) -> None:
    """Hook for the fraud module: score a newly submitted application."""
    from coupons import signals

    signals.application_submitted.send(sender=Application, application_id=application_id)


@transaction.atomic
def application_withdraw(*, application: Application, actor, reason: str = "") -> Application:
    application = Application.objects.select_for_update().get(pk=application.pk)
    return transition(application, "withdraw", actor=actor, reason=reason)


def ensure_owner(application: Application, organisation: Organisation) -> None:
    if application.organisation_id != organisation.pk:
        raise NotPermitted(_("This application belongs to another organisation."))

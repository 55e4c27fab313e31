"""The application state machine: the one place that knows which transitions exist. Every
transition records who, when, from, to and why in the audit trail.

    draft ──submit──▶ submitted ──start_review──▶ under_review ──approve──▶ approved
                        │                           │
                        ├──reject / return──────────┤──reject──▶ rejected
                        │                           └──return──▶ returned ──submit──▶ submitted
    draft, submitted, returned ──withdraw──▶ withdrawn

Once under review an application is the reviewers' to decide: the enterprise cannot withdraw it
then, only ask the reviewer to return it.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.audit import audit_record
from core.errors import ApplicationError
from coupons.models import Application

S = Application.Status

TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "submit": (frozenset({S.DRAFT, S.RETURNED}), S.SUBMITTED),
    "start_review": (frozenset({S.SUBMITTED}), S.UNDER_REVIEW),
    "approve": (frozenset({S.UNDER_REVIEW}), S.APPROVED),
    "reject": (frozenset({S.SUBMITTED, S.UNDER_REVIEW}), S.REJECTED),
    "return": (frozenset({S.SUBMITTED, S.UNDER_REVIEW}), S.RETURNED),
    "withdraw": (frozenset({S.DRAFT, S.SUBMITTED, S.RETURNED}), S.WITHDRAWN),
}


ACTION_PAST = {
    "submit": gettext_lazy("submitted"),
    "start_review": gettext_lazy("taken into review"),
    "approve": gettext_lazy("approved"),
    "reject": gettext_lazy("rejected"),
    "return": gettext_lazy("returned for changes"),
    "withdraw": gettext_lazy("withdrawn"),
}


class TransitionNotAllowed(ApplicationError):
    code = "transition_not_allowed"
    status = 409


def allowed_actions(application: Application) -> list[str]:
    return [action for action, (sources, _target) in TRANSITIONS.items() if application.status in sources]


def transition(
    application: Application, action: str, *, actor, reason: str = "", data: dict | None = None
) -> Application:
    """Move ``application`` along ``action`` and save it, with its audit entry. The caller holds
    the row lock and has checked the business rules of the action."""
    if action not in TRANSITIONS:
        raise ValueError(f"unknown action {action}")
    sources, target = TRANSITIONS[action]
    if application.status not in sources:
        raise TransitionNotAllowed(
            _("An application that is %(state)s cannot be %(action)s.")
            % {"state": application.get_status_display(), "action": ACTION_PAST[action]}
        )
    source = application.status
    application.status = target
    now = timezone.now()
    fields = ["status", "updated_at"]
    if action == "submit":
        application.submitted_at = now
        fields.append("submitted_at")
    if target in (S.APPROVED, S.REJECTED):
        application.decided_at = now
        fields.append("decided_at")
    application.save(update_fields=fields + (["granted_amount"] if target == S.APPROVED else []))
    audit_record(
        actor=actor,
        obj=application,
        action=f"application.{action}",
        from_state=source,
        to_state=target,
        reason=reason,
        data=data,
    )
    return application

"""Writing the audit trail. Every service that changes the state of something that matters
calls ``audit_record`` inside its own transaction, so the entry and the change land together."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType

from core.models import AuditEntry


def _actor_fields(actor) -> dict:
    if actor is None:
        return {"actor": None, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor": None, "actor_label": actor[:100]}
    if getattr(actor, "is_authenticated", False):
        return {"actor": actor, "actor_label": actor.get_username()[:100]}
    return {"actor": None, "actor_label": str(actor)[:100]}


def audit_record(
    *,
    actor,
    obj,
    action: str,
    from_state: str = "",
    to_state: str = "",
    reason: str = "",
    data: dict | None = None,
) -> AuditEntry:
    """Record one action. ``actor`` is a user, a label such as ``"provider:<USCC>"``, or None
    for the system itself."""
    return AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action=action,
        from_state=from_state or "",
        to_state=to_state or "",
        reason=reason or "",
        data=data or {},
        **_actor_fields(actor),
    )


def audit_trail_for(obj):
    """The entries about one object, newest first."""
    return AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
    ).select_related("actor")


def audit_record_many(*, actor, objs, action: str, to_state=lambda obj: "", reason: str = "") -> None:
    """One entry per object in a single insert, for imports of many rows."""
    if not objs:
        return
    content_type = ContentType.objects.get_for_model(objs[0], for_concrete_model=False)
    AuditEntry.objects.bulk_create(
        [
            AuditEntry(
                content_type=content_type,
                object_id=str(obj.pk),
                object_repr=str(obj)[:200],
                action=action,
                to_state=to_state(obj) or "",
                reason=reason,
                **_actor_fields(actor),
            )
            for obj in objs
        ],
        batch_size=2000,
    )

"""What a reviewer sees beside an application, gathered in one place so that the admin page
and the API show the same things. The usage and risk panels are filled by the usage and fraud
modules as they arrive; until then they say so."""

from __future__ import annotations


def usage_so_far(application) -> dict | None:
    """Metered usage of the applicant at its provider since the programme opened, beside the
    claim."""
    import datetime as dt

    from django.db.models import Count, Max, Min, Sum
    from django.utils import timezone
    from django.utils.translation import gettext as _

    from coupons.models import UsageRecord

    zone = timezone.get_current_timezone()
    since = dt.datetime.combine(application.program.opens, dt.time.min, tzinfo=zone)
    totals = UsageRecord.objects.filter(
        enterprise_id=application.organisation_id, provider_id=application.provider_id, started_at__gte=since
    ).aggregate(
        records=Count("id"),
        hours=Sum("card_hours"),
        amount=Sum("amount"),
        first=Min("started_at"),
        last=Max("ended_at"),
    )
    if not totals["records"]:
        return None
    share = (totals["hours"] / application.claimed_card_hours * 100) if application.claimed_card_hours else None
    return {
        _("records"): totals["records"],
        _("card-hours"): f"{totals['hours']:.1f}"
        + (f" ({share:.0f}% {_('of the claim')})" if share is not None else ""),
        _("billed (yuan)"): f"{totals['amount']:.2f}",
        _("from – to"): f"{totals['first'].astimezone(zone):%Y-%m-%d} – {totals['last'].astimezone(zone):%Y-%m-%d}",
    }


def risk_for(application) -> dict | None:
    """The latest risk assessment with its reasons in the reader's language, or None when not
    scored yet."""
    from django.utils.translation import get_language

    assessment = application.assessments.order_by("-created_at", "-id").first()
    if assessment is None:
        return None
    language = "zh" if (get_language() or "").startswith("zh") else "en"
    return {
        "score": assessment.score,
        "band": assessment.band,
        "band_display": dict(application._meta.get_field("risk_band").choices).get(assessment.band, assessment.band),
        "reasons": [reason.get(language) or reason.get("en") for reason in assessment.reasons[:8]],
        "model_version": assessment.model_version,
        "at": assessment.created_at,
        "assessment_id": assessment.pk,
    }


def review_panels(application) -> dict:
    return {"usage": usage_so_far(application), "risk": risk_for(application)}

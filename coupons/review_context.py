"""What a reviewer sees beside an application, gathered in one place so that the admin page
and the API show the same things. The usage and risk panels are filled by the usage and fraud
modules as they arrive; until then they say so."""

from __future__ import annotations


def usage_so_far(application) -> dict | None:
    """Metered usage of the applicant at its provider since the programme opened."""
    return None


def risk_for(application) -> dict | None:
    """The latest risk assessment with its reasons, or None when not scored yet."""
    return None


def review_panels(application) -> dict:
    return {"usage": usage_so_far(application), "risk": risk_for(application)}

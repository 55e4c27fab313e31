"""Fixtures that compose: organisation → provider → personas. Personas are named after who
they are (the owner, a teammate, an outsider, a provider, a reviewer, an auditor)."""

from __future__ import annotations

import pytest
from django.db import connection

from enterprises import roles
from tests import factories


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` need PostgreSQL; on the SQLite default they are skipped."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_language_left_over():
    """A test that asks for Chinese must not leave it active for the next one."""
    from django.utils import translation

    yield
    translation.deactivate()


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture
def organisation(db):
    return factories.make_organisation()


@pytest.fixture
def other_organisation(db):
    return factories.make_organisation()


@pytest.fixture
def provider(db):
    return factories.make_provider()


@pytest.fixture
def owner(organisation):
    return factories.make_portal_user(organisation, username="owner")


@pytest.fixture
def teammate(organisation):
    return factories.make_portal_user(organisation, username="teammate")


@pytest.fixture
def outsider(other_organisation):
    return factories.make_portal_user(other_organisation, username="outsider")


@pytest.fixture
def provider_user(provider):
    return factories.make_portal_user(provider.organisation, role="provider", username="provider-user")


@pytest.fixture
def officer(db):
    return factories.make_user("officer", staff=True, groups=(roles.PROGRAMME_OFFICERS,))


@pytest.fixture
def reviewer(db):
    return factories.make_user("reviewer", staff=True, groups=(roles.REVIEWERS,))


@pytest.fixture
def second_reviewer(db):
    return factories.make_user("reviewer2", staff=True, groups=(roles.REVIEWERS,))


@pytest.fixture
def auditor(db):
    return factories.make_user("auditor", staff=True, groups=(roles.AUDITORS,))

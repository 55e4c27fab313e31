"""Signals other apps listen to, so that coupons does not import the fraud module."""

from django.dispatch import Signal

# Sent after the commit of a submission, with ``application_id``.
application_submitted = Signal()

# Sent after the commit of a usage batch, with ``provider_id`` and ``enterprise_ids``.
usage_ingested = Signal()

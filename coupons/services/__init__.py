"""Writes of the coupons app, one module per concern: ``ledger`` (posting), ``programs``,
``applications`` (the enterprise's side), ``workflow`` (the state machine), ``review`` and
``coupons``. Views, API views, admin actions, commands and tasks call these."""

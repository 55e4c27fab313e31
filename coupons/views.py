"""Portal pages for enterprises: applications and coupons. Thin: parse, call a service,
render. Querysets come scoped from the selectors, so another organisation's rows are a 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from coupons.forms import ApplicationForm
from coupons.selectors import applications_for_user, coupons_for_user, redemptions_for_user, statements_for_user
from coupons.services.applications import (
    application_create,
    application_submit,
    application_update,
    application_withdraw,
)
from coupons.services.settlement import statement_csv, statement_totals
from coupons.services.workflow import allowed_actions
from enterprises.models import PortalAccount
from enterprises.selectors import portal_account_for


def _enterprise_account(request) -> PortalAccount:
    account = portal_account_for(request.user)
    if account is None or account.role != PortalAccount.Role.ENTERPRISE:
        raise PermissionDenied
    return account


def _add_service_errors(form, error: ApplicationError) -> None:
    form.add_error(None, error.message)
    for problem in error.details:
        field = problem.column if problem.column in form.fields else None
        form.add_error(field, problem.reason)


@login_required
def application_list(request):
    applications = applications_for_user(request.user).order_by("-created_at")
    return render(request, "portal/applications.html", {"applications": applications})


@login_required
def application_new(request):
    account = _enterprise_account(request)
    form = ApplicationForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            application = application_create(
                organisation=account.organisation, created_by=request.user, **form.cleaned_data
            )
            if "submit" in request.POST:
                application_submit(application=application, actor=request.user)
                messages.success(request, _("Application %(ref)s submitted.") % {"ref": application.reference})
            else:
                messages.success(request, _("Draft %(ref)s saved.") % {"ref": application.reference})
            return redirect("portal:application", reference=application.reference)
        except ApplicationError as error:
            _add_service_errors(form, error)
    return render(request, "portal/application_form.html", {"form": form})


@login_required
def application_edit(request, reference):
    _enterprise_account(request)
    application = get_object_or_404(applications_for_user(request.user), reference=reference)
    form = ApplicationForm(request.POST or None, request.FILES or None, instance=application)
    if request.method == "POST" and form.is_valid():
        try:
            changed = {name: form.cleaned_data[name] for name in form.changed_data}
            application = application_update(application=application, actor=request.user, **changed)
            if "submit" in request.POST:
                application_submit(application=application, actor=request.user)
                messages.success(request, _("Application %(ref)s submitted.") % {"ref": application.reference})
            return redirect("portal:application", reference=application.reference)
        except ApplicationError as error:
            _add_service_errors(form, error)
    return render(request, "portal/application_form.html", {"form": form, "application": application})


@login_required
def application_detail(request, reference):
    application = get_object_or_404(applications_for_user(request.user), reference=reference)
    account = portal_account_for(request.user)
    is_owner = account is not None and account.organisation_id == application.organisation_id
    return render(
        request,
        "portal/application_detail.html",
        {
            "application": application,
            "app_messages": application.messages.all(),
            "actions": allowed_actions(application) if is_owner else [],
            "coupon": getattr(application, "coupon", None) if application.status == "approved" else None,
        },
    )


@login_required
@require_POST
def application_action(request, reference, action):
    _enterprise_account(request)
    application = get_object_or_404(applications_for_user(request.user), reference=reference)
    try:
        if action == "submit":
            application_submit(application=application, actor=request.user)
            messages.success(request, _("Application submitted."))
        elif action == "withdraw":
            application_withdraw(application=application, actor=request.user, reason=request.POST.get("reason", ""))
            messages.success(request, _("Application withdrawn."))
        else:
            raise PermissionDenied
    except ApplicationError as error:
        messages.error(request, " ".join([error.message, *[p.reason for p in error.details]]))
    return redirect("portal:application", reference=reference)


@login_required
def coupon_list(request):
    coupons = coupons_for_user(request.user).order_by("-issued_at")
    return render(request, "portal/coupons.html", {"coupons": coupons})


@login_required
def redemption_list(request):
    redemptions = redemptions_for_user(request.user).order_by("-created_at")[:500]
    return render(request, "portal/redemptions.html", {"redemptions": redemptions})


@login_required
def statement_list(request):
    statements = statements_for_user(request.user).order_by("-month")
    return render(request, "portal/statements.html", {"statements": [(s, statement_totals(s)) for s in statements]})


@login_required
def statement_download(request, pk):
    statement = get_object_or_404(statements_for_user(request.user), pk=pk)
    response = HttpResponse("\ufeff" + statement_csv(statement), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="statement-{statement.month:%Y-%m}.csv"'
    return response

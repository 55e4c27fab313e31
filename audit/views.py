"""The auditors' workspace: read-only lists with filters, sorting and pagination, and their
CSV exports. Thin: the lists are declared in ``audit.lists``, the exports in ``audit.exports``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.exports import export_stream
from audit.lists import LISTS, AuditList, filtered, ordered

PAGE_SIZE = 50


def _workspace_user(request) -> None:
    if not (request.user.is_staff and request.user.has_perm("audit.view_workspace")):
        raise PermissionDenied


def can_export(user, audit_list: AuditList) -> bool:
    return user.has_perm("audit.export_data") and (
        not audit_list.export_permission or user.has_perm(audit_list.export_permission)
    )


def _list(kind: str) -> AuditList:
    try:
        return LISTS[kind]
    except KeyError:
        raise Http404 from None


@login_required
def index(request):
    _workspace_user(request)
    return render(request, "audit/index.html", {"lists": LISTS.values()})


@login_required
def list_view(request, kind):
    _workspace_user(request)
    audit_list = _list(kind)
    queryset, filterset = filtered(audit_list, request.GET)
    sort = request.GET.get("sort", "")
    page = Paginator(ordered(audit_list, queryset, sort).values_list(*audit_list.keys), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    return render(
        request,
        "audit/list.html",
        {
            "audit_list": audit_list,
            "filterset": filterset,
            "page": page,
            "rows": [list(zip(audit_list.columns, row, strict=True)) for row in page.object_list],
            "sort": sort,
            "query": query.urlencode(),
            "sort_query": sort_query.urlencode(),
            "can_export": can_export(request.user, audit_list),
        },
    )


@login_required
def export_view(request, kind):
    _workspace_user(request)
    audit_list = _list(kind)
    if not can_export(request.user, audit_list):
        raise PermissionDenied
    queryset, filterset = filtered(audit_list, request.GET)
    if filterset.is_bound and not filterset.is_valid():
        raise Http404("invalid filters")
    queryset = ordered(audit_list, queryset, request.GET.get("sort"))
    bom = request.GET.get("encoding", "utf-8-bom") != "utf-8"
    filters = {key: request.GET.get(key) for key in request.GET if key not in ("page",)}
    response = StreamingHttpResponse(
        export_stream(audit_list=audit_list, queryset=queryset, actor=request.user, filters=filters, bom=bom),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{kind}-{timezone.localtime():%Y%m%d-%H%M%S}.csv"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
def dashboard(request):
    """Charts for staff and auditors (Chart.js, vendored under static/vendor)."""
    if not (
        request.user.is_staff
        and (request.user.has_perm("audit.view_workspace") or request.user.has_perm("coupons.view_program"))
    ):
        raise PermissionDenied
    from audit.dashboards import dashboard as figures

    labels = {
        "forecast": _("forecast"),
        "applications": _("applications"),
        "granted": _("granted (yuan)"),
        "high_share": _("high-risk share"),
        "enterprises": _("enterprises"),
        "flagged": _("flagged high risk"),
        "claimed": _("claimed card-hours"),
        "metered": _("metered card-hours"),
        "leverage": _("yuan of own spend per yuan of subsidy"),
        "domestic": _("domestic share"),
    }
    return render(
        request, "audit/dashboard.html", {"figures": figures(), "labels": {k: str(v) for k, v in labels.items()}}
    )

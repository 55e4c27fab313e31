"""REST endpoints for programmes, applications (with review actions) and coupons. Scoping
lives in the selectors; rules in the services; this module only parses and renders."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api import TEXT_LOOKUP_REGEX
from core.errors import NotPermitted
from coupons.filters import ApplicationFilter, CouponFilter
from coupons.models import Program
from coupons.selectors import applications_for_user, budget_panel, coupons_for_user
from coupons.serializers import (
    ApplicationSerializer,
    ApprovalOutcomeSerializer,
    ApproveSerializer,
    BudgetPanelSerializer,
    CouponSerializer,
    OptionalReasonSerializer,
    ProgramSerializer,
    ReasonSerializer,
)
from coupons.services.applications import (
    application_create,
    application_submit,
    application_update,
    application_withdraw,
)
from coupons.services.coupons import coupon_freeze, coupon_revoke, coupon_unfreeze
from coupons.services.review import review_approve, review_reject, review_return
from enterprises.models import PortalAccount
from enterprises.selectors import portal_account_for


class IsReviewer(permissions.BasePermission):
    def has_permission(self, request, view):
        return bool(request.user.is_staff and request.user.has_perm("coupons.review_application"))


class CanChangeCoupons(permissions.BasePermission):
    def has_permission(self, request, view):
        return bool(request.user.is_staff and request.user.has_perm("coupons.change_coupon"))


def _enterprise_organisation(request):
    account = portal_account_for(request.user)
    if account is None or account.role != PortalAccount.Role.ENTERPRISE:
        raise NotPermitted("Only an enterprise user can do this.")
    return account.organisation


class ProgramViewSet(viewsets.ReadOnlyModelViewSet):
    """Programmes are public to every signed-in user; the budget panel to staff."""

    serializer_class = ProgramSerializer
    queryset = Program.objects.order_by("-opens", "code")
    lookup_field = "code"
    lookup_value_regex = TEXT_LOOKUP_REGEX

    @extend_schema(responses=BudgetPanelSerializer)
    @action(detail=True, methods=["get"], permission_classes=[permissions.IsAdminUser])
    def budget(self, request, code=None):
        return Response(BudgetPanelSerializer(budget_panel(self.get_object())).data)


APPLICATION_EXAMPLE = OpenApiExample(
    "A draft",
    request_only=True,
    value={
        "program": "AH-2026",
        "provider": "91340100MA2XXXXXXX",
        "accelerator": "NVIDIA A100 80GB",
        "claimed_card_hours": "12000.0000",
        "claimed_amount": "108000.00",
        "scenario": "training",
        "project_summary": "训练工业质检视觉模型……",
    },
)


class ApplicationViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet):
    """An enterprise sees, drafts, submits and withdraws its own applications; staff see all
    and review them."""

    serializer_class = ApplicationSerializer
    filterset_class = ApplicationFilter
    lookup_field = "reference"
    lookup_value_regex = TEXT_LOOKUP_REGEX
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return applications_for_user(self.request.user).order_by("-created_at", "-id")

    @extend_schema(examples=[APPLICATION_EXAMPLE])
    def create(self, request, *args, **kwargs):
        organisation = _enterprise_organisation(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        application = application_create(
            organisation=organisation, created_by=request.user, **serializer.validated_data
        )
        return Response(self.get_serializer(application).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        _enterprise_organisation(request)
        application = self.get_object()
        serializer = self.get_serializer(application, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        application = application_update(application=application, actor=request.user, **serializer.validated_data)
        return Response(self.get_serializer(application).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    @extend_schema(request=None, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request, reference=None):
        _enterprise_organisation(request)
        application = application_submit(application=self.get_object(), actor=request.user)
        return Response(self.get_serializer(application).data)

    @extend_schema(request=OptionalReasonSerializer, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request, reference=None):
        _enterprise_organisation(request)
        data = OptionalReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        application = application_withdraw(
            application=self.get_object(), actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(self.get_serializer(application).data)

    @extend_schema(request=ApproveSerializer, responses=ApprovalOutcomeSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsReviewer])
    def approve(self, request, reference=None):
        data = ApproveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = review_approve(
            application=self.get_object(),
            reviewer=request.user,
            amount=data.validated_data.get("amount"),
            note=data.validated_data["note"],
        )
        return Response(ApprovalOutcomeSerializer(outcome).data)

    @extend_schema(request=ReasonSerializer, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsReviewer])
    def reject(self, request, reference=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            self.get_serializer(
                review_reject(
                    application=self.get_object(), reviewer=request.user, reason=data.validated_data["reason"]
                )
            ).data
        )

    @extend_schema(request=ReasonSerializer, responses=ApplicationSerializer)
    @action(detail=True, methods=["post"], url_path="return", permission_classes=[IsReviewer])
    def return_for_changes(self, request, reference=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            self.get_serializer(
                review_return(
                    application=self.get_object(), reviewer=request.user, reason=data.validated_data["reason"]
                )
            ).data
        )


class CouponViewSet(viewsets.ReadOnlyModelViewSet):
    """An enterprise sees its coupons, a provider the coupons naming it, staff all; staff with
    the change permission freeze, unfreeze and revoke."""

    serializer_class = CouponSerializer
    filterset_class = CouponFilter
    lookup_field = "code"
    lookup_value_regex = TEXT_LOOKUP_REGEX

    def get_queryset(self):
        return coupons_for_user(self.request.user).order_by("-issued_at", "-id")

    def _change_state(self, request, service):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        coupon = get_object_or_404(self.get_queryset(), code=self.kwargs["code"])
        return Response(
            self.get_serializer(service(coupon=coupon, actor=request.user, reason=data.validated_data["reason"])).data
        )

    @extend_schema(request=ReasonSerializer, responses=CouponSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanChangeCoupons])
    def freeze(self, request, code=None):
        return self._change_state(request, coupon_freeze)

    @extend_schema(request=ReasonSerializer, responses=CouponSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanChangeCoupons])
    def unfreeze(self, request, code=None):
        return self._change_state(request, coupon_unfreeze)

    @extend_schema(request=ReasonSerializer, responses=CouponSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanChangeCoupons])
    def revoke(self, request, code=None):
        return self._change_state(request, coupon_revoke)

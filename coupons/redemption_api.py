"""Redemptions and settlement statements over the API. Providers claim with their key; staff
reverse, approve adjustments, approve and pay statements."""

from __future__ import annotations

from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from coupons.models import Redemption, Statement
from coupons.selectors import redemptions_for_user, statements_for_user
from coupons.serializers import ReasonSerializer
from coupons.services.redemptions import (
    ClaimRequest,
    redemption_approve_adjustment,
    redemption_claim,
    redemption_reverse,
)
from coupons.services.settlement import statement_approve, statement_csv, statement_pay, statement_totals
from coupons.usage_api import IsProviderKey


class StaffWith(permissions.BasePermission):
    perm = ""

    def has_permission(self, request, view):
        return bool(request.user.is_staff and request.user.has_perm(self.perm))


class CanChangeRedemptions(StaffWith):
    perm = "coupons.change_redemption"


class CanSettle(StaffWith):
    perm = "coupons.change_statement"


class ClaimSerializer(serializers.Serializer):
    coupon = serializers.CharField(max_length=30)
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    records = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_null=True,
        max_length=100_000,
        help_text="record_ids; leave out to take every eligible record of the period",
    )


class RedemptionSerializer(serializers.ModelSerializer):
    coupon = serializers.CharField(source="coupon.code", read_only=True)
    enterprise_uscc = serializers.CharField(source="coupon.organisation.uscc", read_only=True)
    program = serializers.CharField(source="coupon.program.code", read_only=True)
    provider = serializers.CharField(source="provider.organisation.uscc", read_only=True)
    statement_month = serializers.DateField(source="statement.month", read_only=True, allow_null=True)

    class Meta:
        model = Redemption
        fields = [
            "id",
            "coupon",
            "enterprise_uscc",
            "program",
            "provider",
            "period_start",
            "period_end",
            "records",
            "metered_amount",
            "subsidy",
            "capped_by",
            "state",
            "statement_month",
            "reason",
            "created_at",
        ]
        read_only_fields = fields


class RedemptionFilter(filters.FilterSet):
    coupon = filters.CharFilter(field_name="coupon__code")
    program = filters.CharFilter(field_name="coupon__program__code")
    state = filters.ChoiceFilter(choices=Redemption.State.choices)

    class Meta:
        model = Redemption
        fields = ["coupon", "program", "state"]


class RedemptionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = RedemptionSerializer
    filterset_class = RedemptionFilter

    def get_queryset(self):
        return redemptions_for_user(self.request.user).order_by("-created_at", "-id")

    def get_permissions(self):
        if self.action == "create":
            return [IsProviderKey()]
        return super().get_permissions()

    @extend_schema(
        summary="Claim a redemption for one coupon and one billing period",
        description=(
            "The subsidy is Σ amount × rate of the eligible records (the domestic-chip rate for domestic cards), capped by "
            "the coupon's balance and the enterprise's annual cap. Records must be this provider's, the coupon's "
            "enterprise's, inside the period (one calendar month), the coupon's validity and the programme, and back no "
            "other redemption. Refused (422) when the provider is not whitelisted or applicant and provider are related "
            "parties. The `Idempotency-Key` header is required: the same key and body return the stored redemption (200); "
            "the same key with another body is a 409."
        ),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
        request=ClaimSerializer,
        responses={
            201: RedemptionSerializer,
            200: RedemptionSerializer,
            409: OpenApiResponse(description="key reused"),
            422: OpenApiResponse(description="refused"),
        },
        examples=[
            OpenApiExample(
                "A month",
                request_only=True,
                value={"coupon": "AH2026-7K2M-QX9P", "period_start": "2026-11-01", "period_end": "2026-11-30"},
            )
        ],
    )
    def create(self, request, *args, **kwargs):
        data = ClaimSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        claim = ClaimRequest(
            coupon_code=data.validated_data["coupon"],
            period_start=data.validated_data["period_start"],
            period_end=data.validated_data["period_end"],
            record_ids=data.validated_data.get("records"),
        )
        redemption, replayed = redemption_claim(
            provider=request.user.provider,
            request=claim,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            actor=str(request.user),
        )
        return Response(
            RedemptionSerializer(redemption).data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED
        )

    @extend_schema(request=ReasonSerializer, responses=RedemptionSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanChangeRedemptions])
    def reverse(self, request, pk=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            RedemptionSerializer(
                redemption_reverse(
                    redemption=self.get_object(), actor=request.user, reason=data.validated_data["reason"]
                )
            ).data
        )

    @extend_schema(request=ReasonSerializer, responses=RedemptionSerializer)
    @action(detail=True, methods=["post"], url_path="approve-adjustment", permission_classes=[CanChangeRedemptions])
    def approve_adjustment(self, request, pk=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            RedemptionSerializer(
                redemption_approve_adjustment(
                    redemption=self.get_object(), actor=request.user, reason=data.validated_data["reason"]
                )
            ).data
        )


class StatementSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.organisation.uscc", read_only=True)
    totals = serializers.SerializerMethodField()

    class Meta:
        model = Statement
        fields = ["id", "provider", "month", "state", "approved_at", "paid_at", "totals"]
        read_only_fields = fields

    def get_totals(self, statement) -> dict:
        return {code: {k: str(v) for k, v in entry.items()} for code, entry in statement_totals(statement).items()}


class StatementViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = StatementSerializer

    def get_queryset(self):
        return statements_for_user(self.request.user).order_by("-month", "id")

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=True, methods=["get"])
    def csv(self, request, pk=None):
        statement = self.get_object()
        response = HttpResponse("\ufeff" + statement_csv(statement), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="statement-{statement.provider.organisation.uscc}-{statement.month:%Y-%m}.csv"'
        )
        return response

    @extend_schema(request=None, responses=StatementSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanSettle])
    def approve(self, request, pk=None):
        return Response(StatementSerializer(statement_approve(statement=self.get_object(), actor=request.user)).data)

    @extend_schema(request=None, responses=StatementSerializer)
    @action(detail=True, methods=["post"], permission_classes=[CanSettle])
    def pay(self, request, pk=None):
        return Response(StatementSerializer(statement_pay(statement=self.get_object(), actor=request.user)).data)

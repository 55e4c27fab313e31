from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from coupons.models import Accelerator, Application, Coupon, Program
from enterprises.models import Provider


@extend_schema_field(OpenApiTypes.STR)
class ProviderUsccField(serializers.RelatedField):
    """A provider named by its USCC."""

    default_error_messages = {"does_not_exist": "No provider with USCC {value}."}

    def to_internal_value(self, data):
        try:
            return self.get_queryset().get(organisation__uscc=str(data).strip().upper())
        except Provider.DoesNotExist:
            self.fail("does_not_exist", value=data)

    def to_representation(self, value):
        return value.organisation.uscc


class ProgramSerializer(serializers.ModelSerializer):
    class Meta:
        model = Program
        fields = [
            "id",
            "code",
            "name",
            "budget",
            "rate",
            "domestic_rate",
            "per_enterprise_cap",
            "opens",
            "closes",
            "validity_days",
            "second_review_amount",
            "second_review_band",
            "risk_medium_from",
            "risk_high_from",
        ]
        read_only_fields = fields


class BudgetPanelSerializer(serializers.Serializer):
    budget = serializers.DecimalField(max_digits=16, decimal_places=2)
    issued = serializers.DecimalField(max_digits=16, decimal_places=2)
    redeemed = serializers.DecimalField(max_digits=16, decimal_places=2)
    returned = serializers.DecimalField(max_digits=16, decimal_places=2)
    remaining = serializers.DecimalField(max_digits=16, decimal_places=2)
    daily_pace = serializers.DecimalField(max_digits=16, decimal_places=2)
    runs_out_on = serializers.DateField(allow_null=True)


class ApplicationSerializer(serializers.ModelSerializer):
    program = serializers.SlugRelatedField(slug_field="code", queryset=Program.objects.all())
    provider = ProviderUsccField(queryset=Provider.objects.select_related("organisation"))
    accelerator = serializers.SlugRelatedField(slug_field="name", queryset=Accelerator.objects.all())
    organisation = serializers.CharField(source="organisation.uscc", read_only=True)
    organisation_name = serializers.CharField(source="organisation.name", read_only=True)
    claimed_card_hours = serializers.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"))
    claimed_amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Application
        fields = [
            "id",
            "reference",
            "organisation",
            "organisation_name",
            "program",
            "provider",
            "accelerator",
            "claimed_card_hours",
            "claimed_amount",
            "scenario",
            "project_summary",
            "status",
            "submitted_at",
            "decided_at",
            "granted_amount",
            "risk_score",
            "risk_band",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "reference",
            "status",
            "submitted_at",
            "decided_at",
            "granted_amount",
            "risk_score",
            "risk_band",
            "created_at",
        ]


class CouponSerializer(serializers.ModelSerializer):
    application = serializers.CharField(source="application.reference", read_only=True)
    organisation = serializers.CharField(source="organisation.uscc", read_only=True)
    program = serializers.CharField(source="program.code", read_only=True)
    provider = serializers.CharField(source="provider.organisation.uscc", read_only=True)
    balance = serializers.DecimalField(source="account.balance", max_digits=16, decimal_places=2, read_only=True)

    class Meta:
        model = Coupon
        fields = [
            "id",
            "code",
            "application",
            "organisation",
            "program",
            "provider",
            "face_value",
            "balance",
            "returned_amount",
            "valid_from",
            "valid_until",
            "state",
            "issued_at",
        ]
        read_only_fields = fields


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=False, max_length=2000)


class OptionalReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, required=False, default="", max_length=2000)


class ApproveSerializer(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), required=False, allow_null=True
    )
    note = serializers.CharField(allow_blank=True, required=False, default="", max_length=2000)


class ApprovalOutcomeSerializer(serializers.Serializer):
    application = ApplicationSerializer()
    awaiting_second_review = serializers.BooleanField()
    coupon = CouponSerializer(allow_null=True)

"""Providers report metered usage: ``POST /api/v1/usage/`` with the provider's API key, as
JSON ``{"records": [...]}`` or as a CSV body (``Content-Type: text/csv``) or upload (multipart
field ``file``). Reads: ``GET /api/v1/usage/`` scoped to who is asking."""

from __future__ import annotations

import orjson
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.response import Response

from core.errors import Problem, ValidationFailed
from coupons.models import UsageRecord
from coupons.selectors import usage_for_user
from coupons.services.usage import MAX_BATCH, parse_csv_records, usage_ingest
from enterprises.authentication import ProviderPrincipal

MAX_BODY_BYTES = 20 * 1024 * 1024  # 10,000 records of JSON are about 3 MB


class IsProviderKey(permissions.BasePermission):
    message = "Usage is reported with a provider API key (Authorization: Api-Key <key>)."

    def has_permission(self, request, view):
        return isinstance(request.user, ProviderPrincipal)


class UsageRecordSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.organisation.uscc", read_only=True)
    enterprise_uscc = serializers.CharField(source="enterprise.uscc", read_only=True)
    gpu_model = serializers.CharField(source="accelerator.name", read_only=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "provider",
            "record_id",
            "enterprise_uscc",
            "gpu_model",
            "gpu_count",
            "started_at",
            "ended_at",
            "card_hours",
            "amount",
            "price_per_card_hour",
            "provider_unit",
            "standard_units",
            "received_at",
            "redemption",
        ]
        read_only_fields = fields


class UsageFilter(filters.FilterSet):
    enterprise = filters.CharFilter(field_name="enterprise__uscc")
    provider = filters.CharFilter(field_name="provider__organisation__uscc")
    started_after = filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="lt")
    redeemed = filters.BooleanFilter(field_name="redemption", lookup_expr="isnull", exclude=True)

    class Meta:
        model = UsageRecord
        fields = ["enterprise", "provider"]


USAGE_RECORD_SCHEMA = inline_serializer(
    "UsageRecordIn",
    {
        "record_id": serializers.CharField(max_length=64),
        "enterprise_uscc": serializers.CharField(max_length=18),
        "gpu_model": serializers.CharField(),
        "gpu_count": serializers.IntegerField(min_value=1),
        "started_at": serializers.DateTimeField(),
        "ended_at": serializers.DateTimeField(),
        "card_hours": serializers.DecimalField(max_digits=14, decimal_places=4),
        "amount": serializers.DecimalField(max_digits=14, decimal_places=2),
    },
)
BATCH_SCHEMA = inline_serializer("UsageBatchIn", {"records": USAGE_RECORD_SCHEMA.__class__(many=True)})
RESULT_SCHEMA = inline_serializer(
    "UsageBatchResult",
    {
        "batch": serializers.IntegerField(),
        "records": serializers.IntegerField(),
        "created": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "replayed": serializers.BooleanField(),
    },
)


class UsageViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = UsageRecordSerializer
    filterset_class = UsageFilter

    def get_queryset(self):
        return usage_for_user(self.request.user).order_by("-started_at", "-id")

    def get_permissions(self):
        if self.action == "create":
            return [IsProviderKey()]
        return super().get_permissions()

    @extend_schema(
        summary="Report a batch of metered usage",
        description=(
            f'Up to {MAX_BATCH} records, as JSON `{{"records": [...]}}` or as CSV (the usage format: '
            "`record_id, enterprise_uscc, gpu_model, gpu_count, started_at, ended_at, card_hours, amount`) "
            "with `Content-Type: text/csv` or as multipart field `file`. `card_hours` must equal `gpu_count` × "
            "duration within 1% (or 0.01 card-hours); `ended_at` must be after `started_at` and not in the future "
            "(5 minutes of clock skew allowed). A batch with any invalid record stores nothing and lists every "
            "error with its `index` and `field`. A record already stored with the same payload counts as a "
            "duplicate; with a different payload it is a conflict (409). Sending the same batch again returns "
            "the first result with `replayed: true`."
        ),
        request={"application/json": BATCH_SCHEMA, "text/csv": {"type": "string"}},
        responses={
            201: RESULT_SCHEMA,
            200: OpenApiResponse(RESULT_SCHEMA, description="a replay of a batch already stored"),
            400: OpenApiResponse(description="invalid records (every error with index and field)"),
            409: OpenApiResponse(description="records conflicting with stored usage"),
        },
        examples=[
            OpenApiExample(
                "One record",
                request_only=True,
                value={
                    "records": [
                        {
                            "record_id": "job-2026-11-000123",
                            "enterprise_uscc": "91340100MA8N00012X",
                            "gpu_model": "A100-80G",
                            "gpu_count": 8,
                            "started_at": "2026-11-02T09:00:00+08:00",
                            "ended_at": "2026-11-02T21:30:00+08:00",
                            "card_hours": "100.0000",
                            "amount": "960.00",
                        }
                    ]
                },
            ),
            OpenApiExample(
                "Stored",
                response_only=True,
                status_codes=["201"],
                value={"batch": 17, "records": 1, "created": 1, "duplicates": 0, "replayed": False},
            ),
        ],
    )
    def create(self, request, *args, **kwargs):
        django_request = request._request
        content_type = (django_request.content_type or "").lower()
        if int(django_request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
            raise ValidationFailed(
                f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB; send smaller batches.", code="too_large"
            )
        if content_type.startswith("multipart/"):
            upload = request.FILES.get("file")
            if upload is None:
                raise ValidationFailed(
                    "Upload the CSV as the multipart field 'file'.", details=[Problem("is required", column="file")]
                )
            body = upload.read()
            records, source = parse_csv_records(body), "csv"
        else:
            body = django_request.body
            if content_type.startswith("text/csv"):
                records, source = parse_csv_records(body), "csv"
            else:
                try:
                    payload = orjson.loads(body)
                except orjson.JSONDecodeError as error:
                    raise ValidationFailed(f"The body is not valid JSON: {error}", code="parse_error") from None
                if not isinstance(payload, dict) or "records" not in payload:
                    raise ValidationFailed(
                        'Send {"records": [...]}', details=[Problem("is required", column="records")]
                    )
                records, source = payload["records"], "api"
        result = usage_ingest(provider=request.user.provider, records=records, body=body, source=source)
        return Response(result.as_dict(), status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED)

from django_filters import rest_framework as filters

from coupons.models import Application, Coupon, RiskBand


class ApplicationFilter(filters.FilterSet):
    program = filters.CharFilter(field_name="program__code")
    status = filters.MultipleChoiceFilter(choices=Application.Status.choices)
    risk_band = filters.ChoiceFilter(choices=RiskBand.choices)
    region = filters.CharFilter(field_name="organisation__region_code")
    industry = filters.CharFilter(field_name="organisation__industry_id")
    provider = filters.CharFilter(field_name="provider__organisation__uscc")
    enterprise = filters.CharFilter(field_name="organisation__uscc")
    submitted_after = filters.IsoDateTimeFilter(field_name="submitted_at", lookup_expr="gte")
    submitted_before = filters.IsoDateTimeFilter(field_name="submitted_at", lookup_expr="lt")
    min_amount = filters.NumberFilter(field_name="claimed_amount", lookup_expr="gte")
    max_amount = filters.NumberFilter(field_name="claimed_amount", lookup_expr="lte")

    class Meta:
        model = Application
        fields = ["program", "status", "risk_band", "region", "industry", "provider", "enterprise"]


class CouponFilter(filters.FilterSet):
    program = filters.CharFilter(field_name="program__code")
    state = filters.MultipleChoiceFilter(choices=Coupon.State.choices)
    provider = filters.CharFilter(field_name="provider__organisation__uscc")
    enterprise = filters.CharFilter(field_name="organisation__uscc")

    class Meta:
        model = Coupon
        fields = ["program", "state", "provider", "enterprise"]

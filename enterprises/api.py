"""Registry endpoints. Scoping lives in ``selectors.organisations_for_user``."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from enterprises.authentication import ProviderPrincipal
from enterprises.models import Organisation
from enterprises.selectors import organisations_for_user, portal_account_for
from enterprises.serializers import MeSerializer, OrganisationSerializer


class OrganisationFilter(filters.FilterSet):
    uscc = filters.CharFilter()
    region_code = filters.CharFilter()
    industry = filters.CharFilter(field_name="industry_id")
    digital_core = filters.BooleanFilter(field_name="industry__digital_core")
    data_quality_flag = filters.BooleanFilter(method="filter_flag")

    class Meta:
        model = Organisation
        fields = ["uscc", "region_code", "industry", "is_active"]

    def filter_flag(self, queryset, name, value):
        flagged = {"uscc_checksum_ok": False, "data_quality_resolved": False}
        return queryset.filter(**flagged) if value else queryset.exclude(**flagged)


class OrganisationViewSet(viewsets.ReadOnlyModelViewSet):
    """The registry: staff see every organisation; a portal user or provider only its own."""

    serializer_class = OrganisationSerializer
    filterset_class = OrganisationFilter

    def get_queryset(self):
        return organisations_for_user(self.request.user).order_by("id")


class MeView(APIView):
    """Who the caller is and which organisation they act for."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        user = request.user
        if isinstance(user, ProviderPrincipal):
            data = {
                "kind": "provider_key",
                "username": str(user),
                "organisation": user.provider.organisation,
                "role": "provider",
            }
        else:
            account = portal_account_for(user)
            if account is not None:
                data = {
                    "kind": account.role,
                    "username": user.get_username(),
                    "organisation": account.organisation,
                    "role": account.role,
                }
            else:
                data = {
                    "kind": "staff" if user.is_staff else "none",
                    "username": user.get_username(),
                    "organisation": None,
                    "role": "",
                }
        return Response(MeSerializer(data).data)

from rest_framework import serializers

from enterprises.models import Organisation
from enterprises.privacy import PERSONAL_FIELDS, can_see_personal_data, mask


class OrganisationSerializer(serializers.ModelSerializer):
    industry_code = serializers.CharField(source="industry_id", read_only=True)
    industry_name = serializers.CharField(source="industry.name", read_only=True)
    digital_core = serializers.BooleanField(source="industry.digital_core", read_only=True)
    data_quality_flag = serializers.BooleanField(source="has_data_quality_flag", read_only=True)

    class Meta:
        model = Organisation
        fields = [
            "id",
            "uscc",
            "name",
            "legal_representative",
            "registered_address",
            "region_code",
            "registration_date",
            "registered_capital",
            "paid_in_capital",
            "industry_code",
            "industry_name",
            "digital_core",
            "main_business",
            "social_insured_employees",
            "rd_staff",
            "core_team_city",
            "contact_phone",
            "contact_email",
            "bank_account",
            "is_active",
            "data_quality_flag",
            "data_quality_note",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is None or not can_see_personal_data(request.user, instance.pk):
            for field in PERSONAL_FIELDS:
                data[field] = mask(field, data.get(field))
        return data


class MeSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["staff", "enterprise", "provider", "provider_key", "none"])
    username = serializers.CharField()
    organisation = OrganisationSerializer(allow_null=True)
    role = serializers.CharField(allow_blank=True)

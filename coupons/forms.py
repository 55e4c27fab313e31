"""Forms of the coupons app: the enterprise's application form and the staff's decision forms.
They only parse input; the rules live in the services."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from coupons.models import Accelerator, Application, Program
from enterprises.models import Provider

MAX_CONTRACT_BYTES = 10 * 1024 * 1024


class ApplicationForm(forms.ModelForm):
    class Meta:
        model = Application
        fields = [
            "program",
            "provider",
            "accelerator",
            "claimed_card_hours",
            "claimed_amount",
            "scenario",
            "project_summary",
            "contract",
        ]
        widgets = {"project_summary": forms.Textarea(attrs={"rows": 6})}
        help_texts = {
            "claimed_card_hours": _("Card-hours of compute you will rent in the programme period."),
            "claimed_amount": _("What you will pay the provider for it, in yuan."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        today = timezone.localdate()
        self.fields["program"].queryset = Program.objects.filter(opens__lte=today, closes__gte=today)
        self.fields["provider"].queryset = Provider.objects.filter(whitelisted=True).select_related("organisation")
        self.fields["accelerator"].queryset = Accelerator.objects.all()
        self.fields["claimed_card_hours"].min_value = Decimal("0.0001")
        self.fields["claimed_amount"].min_value = Decimal("0.01")

    def clean_contract(self):
        contract = self.cleaned_data.get("contract")
        if contract and getattr(contract, "size", 0) > MAX_CONTRACT_BYTES:
            raise forms.ValidationError(_("The contract file is larger than 10 MB."))
        return contract


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", _("approve")), ("reject", _("reject")), ("return", _("return for changes"))]
    )
    amount = forms.DecimalField(
        label=_("amount to grant (yuan)"), max_digits=14, decimal_places=2, required=False, min_value=Decimal("0.01")
    )
    reason = forms.CharField(label=_("reason / note"), widget=forms.Textarea(attrs={"rows": 3}), required=False)


class CouponStateForm(forms.Form):
    action = forms.ChoiceField(choices=[("freeze", _("freeze")), ("unfreeze", _("unfreeze")), ("revoke", _("revoke"))])
    reason = forms.CharField(label=_("reason"), widget=forms.Textarea(attrs={"rows": 2}))

"""Portal pages of the registry: the signed-in user's organisation."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from enterprises.selectors import portal_account_for


@login_required
def portal_home(request):
    account = portal_account_for(request.user)
    return render(
        request, "portal/home.html", {"account": account, "organisation": account.organisation if account else None}
    )

"""API-key authentication for compute providers: ``Authorization: Api-Key <key>``."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, throttling

from enterprises.services import provider_key_authenticate


class ProviderPrincipal:
    """Who a request authenticated with a provider key acts as. Not a Django user: a provider
    key can do only what the provider endpoints allow."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True

    def __init__(self, api_key):
        self.api_key = api_key
        self.provider = api_key.provider
        self.pk = None

    def __str__(self):
        return f"provider:{self.provider.organisation.uscc}"

    def get_username(self):
        return str(self)

    def has_perm(self, perm, obj=None):
        return False


class ProviderKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw_key = raw_key.strip()
        if not raw_key:
            raise exceptions.AuthenticationFailed("No API key given after 'Api-Key'.")
        api_key = provider_key_authenticate(raw_key=raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ProviderPrincipal(api_key), api_key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class ProviderKeyScheme(OpenApiAuthenticationExtension):
    target_class = "enterprises.authentication.ProviderKeyAuthentication"
    name = "providerApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; keys are created by staff and shown once.",
        }


class ProviderKeyRateThrottle(throttling.SimpleRateThrottle):
    """A rate limit per provider API key (``DEFAULT_THROTTLE_RATES["provider_key"]``); session
    users are not throttled here."""

    scope = "provider_key"

    def get_cache_key(self, request, view):
        if not isinstance(request.user, ProviderPrincipal):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.api_key.prefix}

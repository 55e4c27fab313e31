"""The portal for enterprises and providers: each app contributes its pages here, under one
``portal`` namespace."""

from django.urls import path

from enterprises import views as enterprise_views

app_name = "portal"

urlpatterns = [
    path("", enterprise_views.portal_home, name="home"),
]

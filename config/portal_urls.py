"""The portal for enterprises and providers: each app contributes its pages here, under one
``portal`` namespace."""

from django.urls import path

from coupons import views as coupon_views
from enterprises import views as enterprise_views

app_name = "portal"

urlpatterns = [
    path("", enterprise_views.portal_home, name="home"),
    path("applications/", coupon_views.application_list, name="applications"),
    path("applications/new/", coupon_views.application_new, name="application_new"),
    path("applications/<str:reference>/", coupon_views.application_detail, name="application"),
    path("applications/<str:reference>/edit/", coupon_views.application_edit, name="application_edit"),
    path("applications/<str:reference>/<str:action>/", coupon_views.application_action, name="application_action"),
    path("coupons/", coupon_views.coupon_list, name="coupons"),
    path("redemptions/", coupon_views.redemption_list, name="redemptions"),
    path("statements/", coupon_views.statement_list, name="statements"),
    path("statements/<int:pk>/csv/", coupon_views.statement_download, name="statement_csv"),
]

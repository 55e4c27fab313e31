"""The REST API under /api/v1/: one router, each app registering its viewsets."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from coupons import api as coupon_api
from coupons import redemption_api, usage_api
from enterprises import api as enterprise_api

router = DefaultRouter()
router.register("organisations", enterprise_api.OrganisationViewSet, basename="organisation")
router.register("programs", coupon_api.ProgramViewSet, basename="program")
router.register("applications", coupon_api.ApplicationViewSet, basename="application")
router.register("coupons", coupon_api.CouponViewSet, basename="coupon")
router.register("usage", usage_api.UsageViewSet, basename="usage")
router.register("redemptions", redemption_api.RedemptionViewSet, basename="redemption")
router.register("statements", redemption_api.StatementViewSet, basename="statement")

urlpatterns = [
    path("me/", enterprise_api.MeView.as_view(), name="api-me"),
    *router.urls,
]

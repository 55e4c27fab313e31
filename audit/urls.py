from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.index, name="index"),
    path("dashboards/", views.dashboard, name="dashboard"),
    path("<slug:kind>/", views.list_view, name="list"),
    path("<slug:kind>/export.csv", views.export_view, name="export"),
]

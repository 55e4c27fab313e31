from django.contrib import admin

from coupons.models import Accelerator


@admin.register(Accelerator)
class AcceleratorAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "domestic", "fp16_dense_tflops", "memory_gb", "aliases"]
    list_filter = ["domestic", "vendor"]
    search_fields = ["name", "aliases", "vendor"]

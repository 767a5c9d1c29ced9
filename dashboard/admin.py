"""Symbol administration (basic: add, edit, enable/disable, halt)."""

from django.contrib import admin

from dashboard.models import Symbol


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "name",
        "asset_class",
        "enabled",
        "halted",
        "initial_price",
        "volatility",
        "tick_interval_ms",
    )
    list_filter = ("asset_class", "enabled", "halted")
    list_editable = ("enabled", "halted")
    search_fields = ("symbol", "name")
    fieldsets = (
        (None, {"fields": ("symbol", "name", "asset_class", "enabled", "halted")}),
        (
            "Simulation",
            {
                "fields": (
                    "initial_price",
                    "precision",
                    "drift",
                    "volatility",
                    "jump_intensity",
                    "tick_interval_ms",
                    "spread_bps",
                )
            },
        ),
    )

"""Symbol administration: live prices in the list, and halt / resume / shock / reset actions.

Actions only collect input and call ``dashboard.services``; no market logic lives here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from dashboard import services
from dashboard.alert_services import announce_change
from dashboard.market.client import sync_redis
from dashboard.market.store import read_quotes
from dashboard.models import Alert, Candle, Symbol


class ShockForm(forms.Form):
    percent = forms.FloatField(
        label="Move price by (%)",
        min_value=services.MIN_SHOCK_PERCENT,
        max_value=services.MAX_SHOCK_PERCENT,
        help_text="For example 5 for +5 % or -10 for -10 %.",
    )

    def clean_percent(self) -> float:
        percent = self.cleaned_data["percent"]
        if percent == 0:
            raise forms.ValidationError("A shock of 0 % changes nothing.")
        return percent


class LiveQuotes:
    """Latest quotes of every symbol, fetched once per changelist request in one round trip."""

    def __init__(self) -> None:
        self._quotes: dict[str, dict[str, Any] | None] | None = None

    def get(self, symbol: Symbol) -> dict[str, Any] | None:
        if self._quotes is None:
            codes = list(Symbol.objects.values_list("symbol", flat=True))
            try:
                snapshots = read_quotes(sync_redis(), codes)
                self._quotes = {code: snap.quote for code, snap in snapshots.items()}
            except Exception:
                self._quotes = {}
        return self._quotes.get(symbol.symbol)


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
    search_fields = ("symbol", "name")
    actions = ("halt", "resume", "shock", "reset_price")
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
        ("Order book", {"fields": ("book_levels", "book_size", "liquidity")}),
    )

    def get_list_display(self, request: HttpRequest) -> tuple[Any, ...]:
        quotes = LiveQuotes()

        @admin.display(description="Last")
        def last_price(obj: Symbol) -> str:
            quote = quotes.get(obj)
            return f"{quote['price']:.{obj.precision}f}" if quote else "—"

        @admin.display(description="Change %")
        def change_pct(obj: Symbol) -> str:
            quote = quotes.get(obj)
            return f"{quote['change_pct']:+.2f} %" if quote else "—"

        @admin.display(description="Status")
        def status(obj: Symbol) -> str:
            return obj.status if obj.enabled else "disabled"

        return ("symbol", "name", "asset_class", last_price, change_pct, status, *self.list_display[3:])

    @admin.action(description="Halt trading in the selected symbols", permissions=["change"])
    def halt(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        changed = services.set_halted(queryset, True)
        self.message_user(request, f"Halted {changed} symbol(s).", messages.SUCCESS)

    @admin.action(description="Resume trading in the selected symbols", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        changed = services.set_halted(queryset, False)
        self.message_user(request, f"Resumed {changed} symbol(s).", messages.SUCCESS)

    @admin.action(description="Shock the price of the selected symbols…", permissions=["change"])
    def shock(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> HttpResponse | None:
        form = ShockForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            codes = services.shock(queryset, form.cleaned_data["percent"])
            self.message_user(
                request, f"Shock of {form.cleaned_data['percent']:+g} % sent to {', '.join(codes)}.", messages.SUCCESS
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Shock prices",
            "form": form,
            "symbols": queryset,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/dashboard/symbol/shock.html", context)

    @admin.action(description="Reset the selected symbols to their initial price", permissions=["change"])
    def reset_price(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        codes = services.reset_to_initial_price(queryset)
        self.message_user(request, f"Reset sent to {', '.join(codes)}.", messages.SUCCESS)


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ("symbol", "interval", "start_ms", "open", "high", "low", "close", "volume")
    list_filter = ("interval", "symbol")
    list_select_related = ("symbol",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Candle | None = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Traders' price alerts: read-only (traders set them); deleting one tells the producers."""

    list_display = ("id", "user", "symbol", "condition", "target", "created_at", "triggered_at", "triggered_price")
    list_filter = (("triggered_at", admin.EmptyFieldListFilter), "condition", "symbol")
    search_fields = ("user__username", "symbol__symbol")
    list_select_related = ("user", "symbol")
    date_hierarchy = "created_at"

    @admin.display(description="target")
    def target(self, alert: Alert) -> str:
        if alert.price is not None:
            return f"{alert.price.normalize():f}"
        return f"{alert.percent.normalize():f} % in {alert.window_minutes} min"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Alert) -> None:
        super().delete_model(request, obj)
        announce_change()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        super().delete_queryset(request, queryset)
        announce_change()

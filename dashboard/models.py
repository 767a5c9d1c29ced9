"""The symbol catalog: what admins configure and the producer simulates.

Every bound is enforced twice, by field validators (a clear message in forms) and by
a database CHECK constraint (so no code path can store an invalid symbol).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from dashboard.market.candles import INTERVALS_MS, interval_label
from dashboard.market.protocol import SYMBOL_PATTERN

MIN_TICK_INTERVAL_MS = 50
MAX_TICK_INTERVAL_MS = 10_000
MAX_PRECISION = 8
MAX_SPREAD_BPS = 1000
MAX_VOLATILITY = 5.0
MAX_DRIFT = 2.0
MAX_JUMP_INTENSITY = 100.0
MIN_BOOK_LEVELS = 1
MAX_BOOK_LEVELS = 50
MAX_BOOK_SIZE = 1_000_000_000.0
MIN_LIQUIDITY = 0.1
MAX_LIQUIDITY = 10.0
# The whole value: "\Z" where "$" would also accept a trailing newline (in Python and SQLite).
SYMBOL_CODE_REGEX = rf"^{SYMBOL_PATTERN}\Z"


class AssetClass(models.TextChoices):
    EQUITY = "equity", "Equity"
    CRYPTO = "crypto", "Crypto"
    FX = "fx", "FX"


class Symbol(models.Model):
    """A tradable instrument of the simulated market."""

    symbol = models.CharField(
        max_length=20,
        unique=True,
        validators=[
            RegexValidator(
                SYMBOL_CODE_REGEX,
                "Use 1-20 upper-case letters, digits, '.' or '-', starting with a letter or digit.",
            )
        ],
        help_text="Upper-case code, e.g. AAPL or BTC-USD.",
    )
    name = models.CharField(max_length=100)
    asset_class = models.CharField(max_length=10, choices=AssetClass.choices, default=AssetClass.EQUITY)
    enabled = models.BooleanField(default=True, help_text="Disabled symbols are not simulated nor listed.")
    halted = models.BooleanField(default=False, help_text="Halted symbols are listed but do not tick.")
    initial_price = models.DecimalField(max_digits=20, decimal_places=8, validators=[MinValueValidator(0.00000001)])
    drift = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(-MAX_DRIFT), MaxValueValidator(MAX_DRIFT)],
        help_text="Annualised drift (0.05 = 5 % a year).",
    )
    volatility = models.FloatField(
        default=0.3,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_VOLATILITY)],
        help_text="Annualised volatility (0.3 = 30 %).",
    )
    jump_intensity = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_JUMP_INTENSITY)],
        help_text="Expected price jumps per simulated day.",
    )
    tick_interval_ms = models.PositiveIntegerField(
        default=250,
        validators=[MinValueValidator(MIN_TICK_INTERVAL_MS), MaxValueValidator(MAX_TICK_INTERVAL_MS)],
        help_text=f"Time between ticks, {MIN_TICK_INTERVAL_MS} ms to {MAX_TICK_INTERVAL_MS} ms.",
    )
    spread_bps = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_SPREAD_BPS)],
        help_text="Bid/ask spread in basis points of the mid price.",
    )
    precision = models.PositiveSmallIntegerField(
        default=2,
        validators=[MaxValueValidator(MAX_PRECISION)],
        help_text="Decimal places of displayed prices.",
    )
    # db_default as well as default: code that does not know a column (the previous release,
    # during an upgrade) leaves it out of its INSERTs (docs/upgrading.md, "Migrations the
    # previous release runs against").
    book_levels = models.PositiveSmallIntegerField(
        default=20,
        db_default=20,
        validators=[MinValueValidator(MIN_BOOK_LEVELS), MaxValueValidator(MAX_BOOK_LEVELS)],
        help_text=f"Price levels per side of the order book, {MIN_BOOK_LEVELS} to {MAX_BOOK_LEVELS}.",
    )
    book_size = models.FloatField(
        default=0.0,
        db_default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_BOOK_SIZE)],
        help_text="Typical size at the best bid and ask in a calm market; 0: three times the average trade volume.",
    )
    liquidity = models.FloatField(
        default=1.0,
        db_default=1.0,
        validators=[MinValueValidator(MIN_LIQUIDITY), MaxValueValidator(MAX_LIQUIDITY)],
        help_text=f"Multiplier on every order book level's size, {MIN_LIQUIDITY:g} to {MAX_LIQUIDITY:g}.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(symbol__regex=SYMBOL_CODE_REGEX), name="symbol_code_pattern"),
            models.CheckConstraint(condition=Q(initial_price__gt=0), name="symbol_initial_price_positive"),
            models.CheckConstraint(
                condition=Q(drift__gte=-MAX_DRIFT) & Q(drift__lte=MAX_DRIFT), name="symbol_drift_range"
            ),
            models.CheckConstraint(
                condition=Q(volatility__gte=0) & Q(volatility__lte=MAX_VOLATILITY), name="symbol_volatility_range"
            ),
            models.CheckConstraint(
                condition=Q(jump_intensity__gte=0) & Q(jump_intensity__lte=MAX_JUMP_INTENSITY),
                name="symbol_jump_intensity_range",
            ),
            models.CheckConstraint(
                condition=Q(tick_interval_ms__gte=MIN_TICK_INTERVAL_MS) & Q(tick_interval_ms__lte=MAX_TICK_INTERVAL_MS),
                name="symbol_tick_interval_range",
            ),
            models.CheckConstraint(
                condition=Q(spread_bps__gte=0) & Q(spread_bps__lte=MAX_SPREAD_BPS), name="symbol_spread_range"
            ),
            models.CheckConstraint(condition=Q(precision__lte=MAX_PRECISION), name="symbol_precision_range"),
            models.CheckConstraint(
                condition=Q(book_levels__gte=MIN_BOOK_LEVELS) & Q(book_levels__lte=MAX_BOOK_LEVELS),
                name="symbol_book_levels_range",
            ),
            models.CheckConstraint(
                condition=Q(book_size__gte=0) & Q(book_size__lte=MAX_BOOK_SIZE), name="symbol_book_size_range"
            ),
            models.CheckConstraint(
                condition=Q(liquidity__gte=MIN_LIQUIDITY) & Q(liquidity__lte=MAX_LIQUIDITY),
                name="symbol_liquidity_range",
            ),
        ]

    def __str__(self) -> str:
        return self.symbol

    @property
    def status(self) -> str:
        return "halted" if self.halted else "trading"

    def to_catalog_entry(self) -> dict[str, object]:
        """The symbol as the protocol's ``hello``/``symbols`` frames list it."""
        return {
            "symbol": self.symbol,
            "name": self.name,
            "asset_class": self.asset_class,
            "precision": self.precision,
            "status": self.status,
        }


CANDLE_INTERVAL_CHOICES = [(name, interval_label(name)) for name in INTERVALS_MS]


class Candle(models.Model):
    """A closed OHLCV candle, flushed in batches from Redis by beat's housekeeping."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="candles")
    interval = models.CharField(max_length=3, choices=CANDLE_INTERVAL_CHOICES)
    start_ms = models.BigIntegerField(help_text="Start of the interval, ms since the Unix epoch (UTC).")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["symbol", "interval", "start_ms"], name="candle_unique_interval_start"),
            models.CheckConstraint(
                condition=Q(low__lte=models.F("open"))
                & Q(low__lte=models.F("close"))
                & Q(high__gte=models.F("open"))
                & Q(high__gte=models.F("close"))
                & Q(low__gt=0)
                & Q(volume__gte=0),
                name="candle_ohlc_consistent",
            ),
        ]
        indexes = [models.Index(fields=["symbol", "interval", "-start_ms"], name="candle_history_idx")]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.interval} @{self.start_ms}"

    def to_wire(self) -> dict[str, object]:
        return {
            "ts": self.start_ms,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "closed": True,
        }


class Clock(models.TextChoices):
    LOCAL = "local", "The browser's time zone"
    UTC = "utc", "UTC"


class Palette(models.TextChoices):
    STANDARD = "standard", "Green up, red down"
    COLOUR_BLIND = "cb", "Blue up, orange down (colour-blind safe)"


class Preference(models.Model):
    """A trader's display preferences, the same in every browser they log in from."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ticker_preference")
    clock = models.CharField(max_length=5, choices=Clock.choices, default=Clock.LOCAL)
    palette = models.CharField(max_length=8, choices=Palette.choices, default=Palette.STANDARD)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.clock}, {self.palette}"

    def to_wire(self) -> dict[str, str]:
        return {"clock": self.clock, "palette": self.palette}


class Watchlist(models.Model):
    """A trader's named, ordered list of symbols; the dashboard streams what it shows."""

    MAX_SYMBOLS = 200

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlists")
    name = models.CharField(max_length=40)
    position = models.PositiveIntegerField(default=0)
    symbols = models.ManyToManyField(Symbol, through="WatchlistItem", related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="watchlist_unique_name_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"


class WatchlistItem(models.Model):
    """One symbol's place in a watchlist."""

    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="items")
    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["watchlist", "symbol"], name="watchlist_item_unique_symbol")]

    def __str__(self) -> str:
        return f"{self.watchlist_id}:{self.symbol_id}"


class AlertCondition(models.TextChoices):
    ABOVE = "above", "Price at or above"
    BELOW = "below", "Price at or below"
    RISE = "rise", "Rises by X % within N minutes"
    FALL = "fall", "Falls by X % within N minutes"


class Alert(models.Model):
    """A trader's price alert, evaluated by the producer; fires once (``triggered_at`` set once)."""

    MAX_WINDOW_MINUTES = 60

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alerts")
    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="alerts")
    condition = models.CharField(max_length=5, choices=AlertCondition.choices)
    price = models.DecimalField(max_digits=20, decimal_places=8, null=True, blank=True, help_text="above/below")
    percent = models.DecimalField(max_digits=6, decimal_places=3, null=True, blank=True, help_text="rise/fall")
    window_minutes = models.PositiveSmallIntegerField(null=True, blank=True, help_text="rise/fall")
    created_at = models.DateTimeField(auto_now_add=True)
    triggered_at = models.DateTimeField(null=True, blank=True, db_index=True)
    triggered_price = models.FloatField(null=True, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(condition__in=["above", "below"]) & Q(price__gt=0))
                | (Q(condition__in=["rise", "fall"]) & Q(percent__gt=0) & Q(window_minutes__gte=1)),
                name="alert_condition_arguments",
            ),
        ]
        indexes = [models.Index(fields=["user", "triggered_at"], name="alert_user_state_idx")]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.condition} ({self.user_id})"


class ApiToken(models.Model):
    """A trader's personal API token for scripts: only its SHA-256 is stored.

    The secret is shown once, at creation; ``prefix`` (its first characters) is kept
    in clear so the settings page can tell tokens apart. Revoking deletes the row.
    """

    MAX_PER_USER = 20

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=40)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    read_only = models.BooleanField(default=False, help_text="Read-only tokens are refused every write (403).")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… {self.name} ({self.user_id})"

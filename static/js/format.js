// Number and time formatting shared by every page: each symbol's precision, aligned.

import { localZone, prefs } from "./prefs.js";

const formatters = new Map();

export function formatPrice(value, precision) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  let fmt = formatters.get(precision);
  if (!fmt) {
    fmt = new Intl.NumberFormat("en-US", { minimumFractionDigits: precision, maximumFractionDigits: precision });
    formatters.set(precision, fmt);
  }
  return fmt.format(value);
}

// A real minus sign, so "+1.20" and "−1.20" have the same width in tabular figures.
export function formatSigned(value, precision) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const text = formatPrice(Math.abs(value), precision);
  return value > 0 ? `+${text}` : value < 0 ? `−${text}` : text;
}

export function formatPct(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : `${formatSigned(value, 2)}%`;
}

const volumeFmt = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export function formatVolume(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : volumeFmt.format(value);
}

// Order sizes (book levels, trades): whole shares and contracts grouped, fractions of a
// coin to four significant digits, very large ones compact, so a ladder column stays narrow.
const sizeFormats = {
  whole: new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 }),
  some: new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 }),
  small: new Intl.NumberFormat("en-US", { maximumSignificantDigits: 4 }),
  compact: new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 }),
};

export function formatSize(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const size = Math.abs(value);
  const fmt = size >= 1e6 ? "compact" : size >= 100 ? "whole" : size >= 1 ? "some" : "small";
  return sizeFormats[fmt].format(value);
}

// Times follow the trader's clock preference: the browser's time zone, or UTC.
const clockFormats = new Map();

function clockFormat(kind) {
  const zone = prefs.clock === "utc" ? "UTC" : undefined;
  const key = `${kind}:${zone ?? "local"}`;
  let fmt = clockFormats.get(key);
  if (!fmt) {
    const options = {
      tick: { hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3 },
      seconds: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
      minutes: { hour: "2-digit", minute: "2-digit" },
      day: { day: "numeric", month: "short" },
      month: { month: "short", year: "numeric" },
      year: { year: "numeric" },
      // The chart legend: short enough to share its line with the candle's figures.
      legend: { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" },
      legendSeconds: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
      full: { weekday: "short", day: "numeric", month: "short", year: "2-digit", hour: "2-digit", minute: "2-digit" },
      fullSeconds: {
        weekday: "short", day: "numeric", month: "short", year: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
      },
    }[kind];
    fmt = new Intl.DateTimeFormat("en-GB", { ...options, hour12: false, timeZone: zone });
    clockFormats.set(key, fmt);
  }
  return fmt;
}

/** ``ms`` (Unix milliseconds) in the trader's clock; ``kind`` picks the precision. */
export function formatClock(ms, kind = "seconds") {
  return clockFormat(kind).format(new Date(ms));
}

/** The clock's name as the page shows it: "UTC" or the browser's zone. */
export function clockName() {
  return prefs.clock === "utc" ? "UTC" : localZone();
}

export function formatTime(ms) {
  return formatClock(ms, "tick");
}

export function formatAge(ms) {
  if (!Number.isFinite(ms)) return "—";
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

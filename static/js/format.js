// Number and time formatting shared by every page: each symbol's precision, aligned.

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

const timeFmt = new Intl.DateTimeFormat("en-GB", {
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false, timeZone: "UTC",
});

export function formatTime(ms) {
  return timeFmt.format(new Date(ms));
}

export function formatAge(ms) {
  if (!Number.isFinite(ms)) return "—";
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

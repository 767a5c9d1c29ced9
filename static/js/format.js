// Number formatting shared by the grid and the symbol page: each symbol's precision, aligned.

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

export function formatSigned(value, precision) {
  if (value === null || value === undefined) return "—";
  const text = formatPrice(Math.abs(value), precision);
  return value > 0 ? `+${text}` : value < 0 ? `−${text}` : text;
}

const volumeFmt = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export function formatVolume(value) {
  return value === null || value === undefined ? "—" : volumeFmt.format(value);
}

const timeFmt = new Intl.DateTimeFormat("en-GB", {
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false, timeZone: "UTC",
});

export function formatTime(ms) {
  return timeFmt.format(new Date(ms));
}

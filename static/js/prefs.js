// Display preferences of the logged-in trader, and the page-wide keyboard shortcuts.
//
// Preferences (clock: "local" or "utc"; palette: "standard" green/red or "cb" blue/orange)
// are kept in localStorage under the username (body[data-user]), so two traders sharing a
// browser each keep their own. They are applied as attributes on <html> (CSS switches the
// palette from there) and announced with a "ticker:prefs" event, which the chart listens to.

const DEFAULTS = { clock: "local", palette: "standard" };
const CHOICES = { clock: ["local", "utc"], palette: ["standard", "cb"] };
const user = document.body.dataset.user || "";
const KEY = `ticker.prefs.${user}`;

function load() {
  let stored = {};
  try {
    stored = JSON.parse(localStorage.getItem(KEY) || "{}");
  } catch {
    stored = {};
  }
  const prefs = { ...DEFAULTS };
  for (const [name, values] of Object.entries(CHOICES)) if (values.includes(stored[name])) prefs[name] = stored[name];
  return prefs;
}

export const prefs = load();

function apply() {
  const html = document.documentElement;
  if (html.dataset.clock !== prefs.clock) html.dataset.clock = prefs.clock;
  if (html.dataset.palette !== prefs.palette) html.dataset.palette = prefs.palette;
  for (const b of document.querySelectorAll("[data-pref=palette]")) b.setAttribute("aria-pressed", String(prefs.palette === "cb"));
  for (const b of document.querySelectorAll("[data-pref=clock]")) b.setAttribute("aria-pressed", String(prefs.clock === "utc"));
  const name = prefs.clock === "utc" ? "UTC" : `Local (${localZone()})`;
  for (const el of document.querySelectorAll("[data-field=clock]")) if (el.textContent !== name) el.textContent = name;
}

/** Set one preference, remember it for this user, and tell the page. */
export function setPref(name, value) {
  if (!CHOICES[name]?.includes(value) || prefs[name] === value) return;
  prefs[name] = value;
  if (user) localStorage.setItem(KEY, JSON.stringify(prefs));
  apply();
  window.dispatchEvent(new CustomEvent("ticker:prefs", { detail: { ...prefs } }));
}

export function togglePref(name) {
  const [a, b] = CHOICES[name];
  setPref(name, prefs[name] === a ? b : a);
}

/** The browser's own time zone, named for the clock switch's label. */
export function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
}

/** The current colours of up and down moves (the palette's CSS variables). */
export function trendColours() {
  const style = getComputedStyle(document.documentElement);
  return { up: style.getPropertyValue("--up").trim(), down: style.getPropertyValue("--down").trim() };
}

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName));
}

/** Palette and clock buttons, the shortcut help dialog and the page-wide keys. */
export function bindGlobalControls() {
  apply();
  const help = document.querySelector(".help-dialog");
  const toggleHelp = () => {
    if (!help) return;
    if (help.open) help.close();
    else help.showModal();
  };
  for (const b of document.querySelectorAll("[data-pref]")) b.addEventListener("click", () => togglePref(b.dataset.pref));
  for (const b of document.querySelectorAll("[data-action=help]")) b.addEventListener("click", toggleHelp);
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const otherDialog = document.querySelector("dialog[open]:not(.help-dialog)");
    if (event.key === "?") {
      if (otherDialog) return;
      event.preventDefault();
      toggleHelp();
    } else if ((event.key === "t" || event.key === "T") && !otherDialog) {
      togglePref("clock");
    } else if ((event.key === "c" || event.key === "C") && !otherDialog) {
      togglePref("palette");
    }
  });
}

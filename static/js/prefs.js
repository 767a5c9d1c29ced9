// Display preferences of the logged-in trader, and the page-wide keyboard shortcuts.
//
// Preferences (clock: "local" or "utc"; palette: "standard" green/red or "cb" blue/orange)
// are stored per trader on the server (/settings/preferences/), so they follow them to any
// browser; the server renders them into <html data-clock data-palette> (CSS switches the
// palette from there, from the first paint). A change is applied at once, saved in the
// background and announced with a "ticker:prefs" event, which the chart listens to.

const CHOICES = { clock: ["local", "utc"], palette: ["standard", "cb"] };
const SAVE_URL = "/settings/preferences/";

function initial(name) {
  const value = document.documentElement.dataset[name];
  return CHOICES[name].includes(value) ? value : CHOICES[name][0];
}

export const prefs = { clock: initial("clock"), palette: initial("palette") };

function save(changes) {
  // The page's own CSRF token (every logged-in page has the logout form's).
  const token = document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
  fetch(SAVE_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": token },
    body: JSON.stringify(changes),
    credentials: "same-origin",
  })
    .then((response) => {
      if (!response.ok) console.warn(`preferences not saved: HTTP ${response.status}`);
    })
    .catch((err) => console.warn(`preferences not saved: ${err.message}`));
}

function apply() {
  const html = document.documentElement;
  if (html.dataset.clock !== prefs.clock) html.dataset.clock = prefs.clock;
  if (html.dataset.palette !== prefs.palette) html.dataset.palette = prefs.palette;
  for (const b of document.querySelectorAll("[data-pref=palette]")) b.setAttribute("aria-pressed", String(prefs.palette === "cb"));
  for (const b of document.querySelectorAll("[data-pref=clock]")) b.setAttribute("aria-pressed", String(prefs.clock === "utc"));
  const name = prefs.clock === "utc" ? "UTC" : `Local (${localZone()})`;
  for (const el of document.querySelectorAll("[data-field=clock]")) if (el.textContent !== name) el.textContent = name;
}

/** Set one preference, save it for this trader, and tell the page. */
export function setPref(name, value) {
  if (!CHOICES[name]?.includes(value) || prefs[name] === value) return;
  prefs[name] = value;
  save({ [name]: value });
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

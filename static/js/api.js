// JSON calls to the site's own API as the page makes them: session cookie, CSRF token,
// and one error shape ({"error", "message", "field"?}) turned into a thrown Error.

function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

export async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: fall through to the status message
  }
  if (!response.ok) {
    const err = new Error(data?.message || `the server answered ${response.status}`);
    err.field = data?.field;
    throw err;
  }
  return data;
}

// The API client: bearer token from the directory's sign-in (kept for this tab only), refresh once on a 401,
// problem details turned into ApiError. Same origin as the page: no CORS, no secret in the page.
const KEY = "huisheng.session";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
}

function keep(tokens) {
  const claims = JSON.parse(decodeURIComponent(escape(atob(
    tokens.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")))));
  const value = { access: tokens.access_token, refresh: tokens.refresh_token, claims };
  sessionStorage.setItem(KEY, JSON.stringify(value));
  return value;
}

export function forget() { sessionStorage.removeItem(KEY); }

async function send(method, path, { body, headers = {}, raw = false } = {}) {
  const current = session();
  const all = { Accept: "application/json", ...headers };
  if (current) all.Authorization = `Bearer ${current.access}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  if (method === "POST" && !all["Idempotency-Key"]) all["Idempotency-Key"] = crypto.randomUUID();
  const answer = await fetch(path, { method, headers: all, body: body === undefined ? undefined : JSON.stringify(body) });
  return answer;
}

/** Call the API; answers {data, etag}. A 401 refreshes the session once and tries again. */
export async function api(method, path, options = {}) {
  let answer = await send(method, path, options);
  if (answer.status === 401 && session()?.refresh && !options.retried) {
    const refreshed = await fetch("/api/v1/auth/refresh", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ refresh_token: session().refresh }) });
    if (refreshed.ok) {
      keep(await refreshed.json());
      answer = await send(method, path, options);
    } else {
      forget();
      location.hash = "#/signin";
    }
  }
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!answer.ok) throw new ApiError(answer.status, data);
  return { data, etag: answer.headers.get("ETag"), status: answer.status };
}

export const get = (path) => api("GET", path).then((a) => a.data);

export async function requestCode(phone) {
  return api("POST", "/api/v1/auth/code", { body: { phone } });
}

export async function signIn(phone, code, password) {
  const body = { phone, code };
  if (password) body.password = password;
  const { data } = await api("POST", "/api/v1/auth/token", { body });
  return keep(data);
}

export async function signOut() {
  try { await api("POST", "/api/v1/auth/logout"); } catch { /* the session ends here whatever the server says */ }
  forget();
}

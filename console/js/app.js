// The console's shell: header (language, large text, sign-out), navigation by role, hash routes, sign-in.
import { ApiError, requestCode, session, signIn, signOut } from "./api.js";
import { clear, field, h } from "./dom.js";
import { lang, setLang, t } from "./i18n.js";
import { opsPage } from "./ops.js";
import { dailyPage, reportsPage, weeklyPage } from "./reports.js";
import { dataPage, inboxPage, minePage, newRequestPage, residentTicketPage, wishesPage } from "./resident.js";
import { boardPage, staffTicketPage } from "./staff.js";
import { broadcastsPage, volunteersPage } from "./volunteers.js";

const STAFF = ["grid_worker", "secretary", "admin"];
const OFFICE = ["secretary", "admin"]; // community-wide: broadcasts, and the ops page beside the ops role
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const flashBox = document.getElementById("flash");

let keepNext = false;

/** A message for everyone, read out by screen readers (role=status / alert); ``keep``: past the next page. */
export function flash(text, kind = "ok", keep = false) {
  keepNext = keep;
  flashBox.className = `flash ${kind}`;
  flashBox.setAttribute("role", kind === "error" ? "alert" : "status");
  flashBox.textContent = text;
}

export function failure(error) {
  if (error instanceof ApiError) {
    const why = { 403: t("forbidden"), 404: t("not_found"), 503: t("unavailable"), 504: t("unavailable") };
    const fields = error.problem.errors ? ` ${JSON.stringify(error.problem.errors)}` : "";
    return t("error", { msg: (why[error.status] || error.message) + fields });
  }
  return t("error", { msg: error.message || String(error) });
}

function home() {
  const role = session()?.claims.role;
  if (!role) return "#/signin";
  if (role === "resident") return "#/r/new";
  if (role === "ops") return "#/o/ops";
  return "#/s/board";
}

const ROUTES = [
  [/^#\/signin$/, null, signInPage],
  [/^#\/r\/new$/, ["resident"], newRequestPage],
  [/^#\/r\/mine$/, ["resident"], minePage],
  [/^#\/r\/ticket\/([\w-]+)$/, ["resident"], residentTicketPage],
  [/^#\/r\/inbox$/, ["resident"], inboxPage],
  [/^#\/r\/data$/, ["resident"], dataPage],
  [/^#\/r\/wishes$/, ["resident"], wishesPage],
  [/^#\/s\/board$/, STAFF, boardPage],
  [/^#\/s\/ticket\/([\w-]+)$/, STAFF, staffTicketPage],
  [/^#\/s\/reports$/, STAFF, reportsPage],
  [/^#\/s\/daily$/, STAFF, dailyPage],
  [/^#\/s\/weekly$/, STAFF, weeklyPage],
  [/^#\/s\/volunteers$/, STAFF, volunteersPage],
  [/^#\/s\/broadcasts$/, OFFICE, broadcastsPage],
  [/^#\/o\/ops$/, ["ops", ...OFFICE], opsPage],
];

function navigation() {
  const role = session()?.claims.role;
  const links = role === "resident"
    ? [["#/r/new", "nav_new"], ["#/r/mine", "nav_mine"], ["#/r/inbox", "nav_inbox"], ["#/r/wishes", "nav_wishes"],
      ["#/r/data", "nav_data"]]
    : role === "ops" ? [["#/o/ops", "nav_ops"]]
      : role ? [["#/s/board", "nav_board"], ["#/s/reports", "nav_reports"], ["#/s/daily", "nav_daily"],
        ["#/s/weekly", "nav_weekly"], ["#/s/volunteers", "nav_volunteers"],
        ...(OFFICE.includes(role) ? [["#/s/broadcasts", "nav_broadcasts"], ["#/o/ops", "nav_ops"]] : [])] : [];
  clear(nav).append(...links.map(([href, key]) => h("a", {
    href, id: `nav-${href.split("/").pop()}`, "aria-current": location.hash === href ? "page" : null }, t(key))));
  nav.hidden = links.length === 0;
}

function header() {
  const large = document.body.classList.contains("large");
  const controls = document.getElementById("controls");
  clear(controls).append(...[
    h("button", { type: "button", id: "toggle-lang", lang: lang() === "en" ? "zh-CN" : "en",
      onclick: () => { setLang(lang() === "en" ? "zh-CN" : "en"); render(); } }, t("lang_switch")),
    h("button", { type: "button", id: "toggle-large", "aria-pressed": String(large), onclick: () => {
      document.body.classList.toggle("large");
      localStorage.setItem("huisheng.large", document.body.classList.contains("large") ? "1" : "");
      header();
    } }, large ? t("large_off") : t("large_on")),
    session() ? h("button", { type: "button", id: "signout", onclick: async () => {
      await signOut(); location.hash = "#/signin"; } }, t("signout")) : null,
  ].filter(Boolean));
  document.getElementById("app-title").textContent = t("app");
  document.getElementById("skip").textContent = t("skip");
  document.title = t("app");
}

let rendering = 0; // the latest render wins: a slower earlier one must not overwrite it

export async function render() {
  const mine = ++rendering;
  header();
  navigation();
  const hash = location.hash || home();
  for (const [pattern, roles, page] of ROUTES) {
    const matched = hash.match(pattern);
    if (!matched) continue;
    if (roles && !roles.includes(session()?.claims.role)) { location.hash = session() ? home() : "#/signin"; return; }
    clear(main).append(h("p", { class: "muted" }, t("loading")));
    let content;
    try {
      content = await page(...matched.slice(1));
    } catch (error) {
      content = h("p", { class: "flash error", role: "alert" }, failure(error));
    }
    if (mine !== rendering) return;
    clear(main).append(content);
    main.dataset.page = hash.split("/").slice(0, 3).join("/");
    return;
  }
  location.hash = home();
}

function signInPage() {
  if (session()) { location.hash = home(); return h("div"); }
  const phone = h("input", { id: "phone", name: "phone", type: "tel", inputmode: "numeric", autocomplete: "tel",
    required: true, maxlength: 20 });
  const code = h("input", { id: "code", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
    required: true, maxlength: 6, pattern: "[0-9]{6}" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password" });
  const sendButton = h("button", { type: "button", id: "send-code", class: "secondary", onclick: async () => {
    if (!phone.reportValidity()) return;
    try {
      await requestCode(phone.value.trim());
      flash(t("code_sent"));
      sendButton.disabled = true;
      let left = 60;
      const timer = setInterval(() => {
        left -= 1;
        sendButton.textContent = left > 0 ? t("resend_in", { s: left }) : t("send_code");
        if (left <= 0) { clearInterval(timer); sendButton.disabled = false; }
      }, 1000);
      code.focus();
    } catch (error) { flash(failure(error), "error"); }
  } }, t("send_code"));
  const form = h("form", { id: "signin-form", class: "card narrow", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await signIn(phone.value.trim(), code.value.trim(), password.value);
      flash("");
      location.hash = home();
    } catch (error) {
      flash(error instanceof ApiError && error.status === 401 ? t("signin_failed") : failure(error), "error");
    }
  } },
  h("h1", {}, t("signin_title")),
  field(t("phone"), phone),
  h("div", { class: "row" }, sendButton),
  field(t("code"), code),
  field(t("password"), password),
  h("button", { type: "submit", id: "signin", class: "primary" }, t("signin")));
  return form;
}

setLang(lang());
if (localStorage.getItem("huisheng.large")) document.body.classList.add("large");
window.addEventListener("hashchange", () => {
  if (!keepNext) flash("");
  keepNext = false;
  render();
});
render();

// The office's volunteer pages and broadcasts: the directory (with who is free when), each volunteer's hours,
// the coverage gaps of a week; notices to a segment of the community and their progress; and a ticket's
// volunteer candidates as the volunteers service ranked them (with the reasons for the order).
import { api, get } from "./api.js";
import { failure, flash } from "./app.js";
import { field, h, select } from "./dom.js";
import { reasonLabel, skillLabel, t, TIME_ZONE, when } from "./i18n.js";
import { day, gapTable } from "./reports.js";

const CHINA_OFFSET = "+08:00"; // a time typed here is a time in the platform's zone (Asia/Shanghai)
const FLAGS = ["elderly", "lives_alone", "disability", "low_income", "home_quarantine", "party_member"];
const POLL_MS = 2000;

/** "2026-12-06T09:30" (datetime-local, Shanghai time) as ISO 8601 with its offset. */
export function shanghai(local) {
  return local ? `${local.length === 16 ? `${local}:00` : local}${CHINA_OFFSET}` : "";
}

/** A volunteer's weekly slots, the days of the same hours together ("周一、周三 09:00–12:00"; "每天 …"). */
function slots(volunteer) {
  const byHours = new Map();
  for (const slot of volunteer.availability || []) {
    const hours = `${slot.start}–${slot.end}`;
    byHours.set(hours, [...(byHours.get(hours) || []), slot.day]);
  }
  return [...byHours].map(([hours, days]) => `${new Set(days).size === 7 ? t("every_day")
    : [...new Set(days)].sort().map((d) => t(`wd_${d}`)).join("、")} ${hours}`).join("；") || "—";
}

let teamsKnown = null; // the community's teams: their names, and the skills a volunteer may be filtered by
async function teamList() {
  teamsKnown = teamsKnown || await get("/api/v1/volunteer-teams?limit=100").then((page) => page.items);
  return teamsKnown;
}

export async function volunteersPage() {
  const [tree, teams] = await Promise.all([get("/api/v1/places"), teamList()]);
  const skills = [...new Set(teams.flatMap((team) => team.skills || []))].sort();
  const teamNames = Object.fromEntries(teams.map((team) => [team.code, team.name]));
  const stored = JSON.parse(sessionStorage.getItem("huisheng.vfilters") || "{}");
  const query = new URLSearchParams({ limit: "100" });
  for (const name of ["skill", "grid"]) if (stored[name]) query.set(name, stored[name]);
  if (stored.available_at) query.set("available_at", shanghai(stored.available_at));
  const names = Object.fromEntries(tree.grids.map((g) => [g.code, g.name]));
  const [page, coverage] = await Promise.all([get(`/api/v1/volunteers?${query}`),
    get(`/api/v1/volunteer-coverage${stored.week ? `?week=${encodeURIComponent(stored.week)}` : ""}`).catch((error) => ({ error }))]);
  const form = h("form", { id: "v-filters", class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const data = Object.fromEntries([...new FormData(form)].filter(([, v]) => v));
    sessionStorage.setItem("huisheng.vfilters", JSON.stringify(data));
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } },
  field(t("skill"), select("v-skill", skills.map((s) => [s, skillLabel(s)]), { value: stored.skill, placeholder: t("all") })),
  field(t("grid"), select("v-grid", tree.grids.map((g) => [g.code, g.name]), { value: stored.grid, placeholder: t("all") })),
  field(t("free_at"), h("input", { id: "v-available_at", type: "datetime-local", value: stored.available_at || "" })),
  field(t("coverage_week"), h("input", { id: "v-week", type: "date", value: stored.week || "" })),
  h("button", { type: "submit", class: "secondary" }, t("apply")));
  for (const control of form.querySelectorAll("select, input")) control.name = control.id.slice(2);
  const rows = page.items.map((v) => {
    const hours = h("td", { class: "hours" }, h("button", { type: "button", class: "secondary small",
      "aria-label": t("hours_of", { name: v.name || v.id }), onclick: async () => {
        try {
          const record = await get(`/api/v1/volunteers/${encodeURIComponent(v.id)}/record?from=${day(-364)}&to=${day()}`);
          hours.replaceChildren(t("hours_value", { h: Math.round((record.totals.total_minutes / 60) * 10) / 10 }));
        } catch (error) { flash(failure(error), "error"); }
      } }, t("show")));
    return h("tr", { "data-volunteer": v.id, "data-status": v.status },
      h("td", {}, v.name || v.id, v.status !== "active" ? h("span", { class: "badge" }, ` ${t(`vs_${v.status}`)}`) : null),
      h("td", {}, v.phone || "—"), h("td", {}, names[v.grid] || v.grid || "—"),
      h("td", {}, (v.skills || []).map(skillLabel).join("、")), h("td", {}, (v.teams || []).map((code) => teamNames[code] || code).join("、") || "—"),
      h("td", {}, slots(v)), h("td", {}, v.rating?.average ?? "—"), hours);
  });
  return h("div", {}, h("h1", {}, t("volunteers_title")),
    h("details", { open: true }, h("summary", {}, t("filters")), form),
    h("div", { class: "table-wrap" }, h("table", { id: "volunteers" }, h("caption", {}, t("volunteer_count", { n: page.items.length })),
      h("thead", {}, h("tr", {}, ["name", "phone", "grid", "skills", "teams", "availability", "rating", "hours_col"]
        .map((c) => h("th", { scope: "col" }, t(c))))), h("tbody", {}, rows))),
    h("section", { class: "card", id: "coverage" }, h("h2", {}, t("coverage_gaps_week", { week: coverage.week || "" })),
      coverage.error ? h("p", {}, t("not_available", { why: failure(coverage.error) }))
        : coverage.gaps.length ? gapTable(coverage.gaps, names) : h("p", { class: "muted" }, t("none"))));
}

/** A ticket's volunteer tasks: the candidates best first, each with why it stands there. */
export async function candidates(ticket) {
  let tasks;
  try {
    tasks = (await get(`/api/v1/tickets/${encodeURIComponent(ticket.id)}/volunteer-tasks`)).items;
  } catch (error) {
    return h("p", { class: "muted" }, t("not_available", { why: failure(error) }));
  }
  if (!tasks.length) return null;
  const known = await get(`/api/v1/volunteers?limit=100${ticket.assignee?.kind === "team" ? `&team=${encodeURIComponent(ticket.assignee.id)}` : ""}`)
    .then((page) => Object.fromEntries(page.items.map((v) => [v.id, v.name]))).catch(() => ({}));
  return h("section", { id: "candidates" }, h("h2", {}, t("candidates")), tasks.map((task) => h("div", { class: "card", "data-task": task.id },
    h("p", {}, `${t("task_state")}: ${t(`w_${task.state}`)}`, task.volunteer ? ` · ${t("volunteer")}: ${known[task.volunteer] || task.volunteer}` : "",
      task.offer ? ` · ${t("offered_to", { who: known[task.offer.volunteer] || task.offer.volunteer, until: when(task.offer.expires_at) })}` : ""),
    h("ol", { class: "ranked" }, (task.proposals || []).map((p) => h("li", { "data-volunteer": p.volunteer },
      h("strong", {}, known[p.volunteer] || p.volunteer), ` (${t("score")} ${p.score}) `,
      h("span", { class: "muted" }, p.reasons.map(reasonLabel).join("；"))))))));
}

/** Before dispatching to a team: who in it is free now, so the choice is an informed one. */
export async function teamPreview(team) {
  const now = new Intl.DateTimeFormat("sv-SE", { timeZone: TIME_ZONE, dateStyle: "short", timeStyle: "short" })
    .format(new Date()).replace(" ", "T");
  const page = await get(`/api/v1/volunteers?team=${encodeURIComponent(team)}&available_at=${encodeURIComponent(shanghai(now))}&limit=100`);
  return h("p", { class: "muted", id: "team-preview", "aria-live": "polite" }, page.items.length
    ? t("free_now", { n: page.items.length, who: page.items.slice(0, 5).map((v) => v.name || v.id).join("、") })
    : t("nobody_free"));
}

// --- broadcasts -------------------------------------------------------------------------------------------

function progress(broadcast) {
  const done = broadcast.status === "done";
  return h("li", { class: "card broadcast", "data-broadcast": broadcast.id, "data-status": broadcast.status },
    h("h3", {}, broadcast.title, " ", h("span", { class: "badge" }, t(`bs_${broadcast.status}`))),
    h("p", {}, broadcast.body),
    h("p", { class: "muted" }, `${t("sent_at")}: ${when(broadcast.created_at)}${broadcast.critical ? ` · ${t("critical")}` : ""}`),
    h("dl", { class: "facts" }, ["targeted", "delivered", "read", "failed"].map((k) =>
      [h("dt", {}, t(`b_${k}`)), h("dd", { class: `b-${k}` }, String(broadcast[k] ?? 0))])),
    h("progress", { max: Math.max(1, broadcast.targeted || 0), value: broadcast.delivered || 0,
      "aria-label": t("b_progress", { title: broadcast.title }) }),
    done ? null : h("p", { class: "muted" }, t("b_running")));
}

let polling = null;

export async function broadcastsPage() {
  clearTimeout(polling);
  const tree = await get("/api/v1/places");
  const buildings = tree.grids.flatMap((g) => g.buildings.map((b) => [b.code, `${g.name} · ${b.name}`]));
  const title = h("input", { id: "b-title", required: true, minlength: 2, maxlength: 40 });
  const body = h("textarea", { id: "b-body", required: true, minlength: 2, maxlength: 1000, rows: 4 });
  const grid = select("b-grid", tree.grids.map((g) => [g.code, g.name]), { placeholder: t("everyone") });
  const building = select("b-building", buildings, { placeholder: t("everyone") });
  const minAge = h("input", { id: "b-min_age", type: "number", min: 0, max: 150, inputmode: "numeric" });
  const maxAge = h("input", { id: "b-max_age", type: "number", min: 0, max: 150, inputmode: "numeric" });
  const flags = h("fieldset", { class: "radios", id: "b-flags" }, h("legend", {}, t("flags")),
    FLAGS.map((flag) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "flags", value: flag, id: `b-flag-${flag}` }), t(`f_${flag}`))));
  const critical = h("input", { type: "checkbox", id: "b-critical" });
  const list = h("ul", { class: "list", id: "broadcasts" });
  const form = h("form", { id: "broadcast-form", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const segment = {};
    if (grid.value) segment.grid = grid.value;
    if (building.value) segment.building = building.value;
    if (minAge.value) segment.min_age = Number(minAge.value);
    if (maxAge.value) segment.max_age = Number(maxAge.value);
    const ticked = [...flags.querySelectorAll("input:checked")].map((input) => input.value);
    if (ticked.length) segment.flags = ticked;
    try {
      await api("POST", "/api/v1/broadcasts", { body: { title: title.value.trim(),
        body: body.value.trim(), segment, critical: critical.checked } });
      flash(t("b_sent"), "ok", true);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (error) { flash(failure(error), "error"); }
  } }, h("h2", {}, t("b_compose")), field(t("b_title"), title), field(t("b_body"), body),
  h("fieldset", { class: "segment" }, h("legend", {}, t("segment")), field(t("grid"), grid), field(t("building"), building),
    h("div", { class: "pair" }, field(t("min_age"), minAge), field(t("max_age"), maxAge)), flags),
  h("p", {}, h("label", { class: "check" }, critical, t("critical_hint"))),
  h("button", { type: "submit", id: "send-broadcast", class: "primary" }, t("b_send")));

  const refresh = async (first = false) => {
    const shown = (await get("/api/v1/broadcasts?limit=20")).items; // the community's latest, newest first
    list.replaceChildren(...(shown.length ? shown.map(progress) : [h("li", { class: "muted" }, t("none"))]));
    // keep watching while one is still going out and this page is the one shown
    if (shown.some((b) => b.status !== "done") && (first || document.body.contains(list))) polling = setTimeout(refresh, POLL_MS);
  };
  await refresh(true);
  return h("div", {}, h("h1", {}, t("broadcasts_title")), form, h("section", { "aria-labelledby": "sent-h" },
    h("h2", { id: "sent-h" }, t("b_sent_list")), list));
}

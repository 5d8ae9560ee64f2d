// The office's reports: 三率 (the three rates) with their trend and breakdowns as charts, the 日清 daily clearance
// list and the 周议 weekly review agenda. The rates API answers one period and one slice at a time: the trend is
// one question per week, a breakdown one per grid or category (asked together; a slice the caller may not see is
// left blank rather than failing the page).
import { get } from "./api.js";
import { failure } from "./app.js";
import { bars, lines } from "./charts.js";
import { field, h, select } from "./dom.js";
import { skillLabel, stateLabel, t, TIME_ZONE, when } from "./i18n.js";
import { countdown } from "./staff.js";

const RATES = ["response_rate", "resolution_rate", "satisfaction_rate"];
const TREND_WEEKS = 6;
const AGENDA = ["overdue", "reopened", "unsatisfied", "bounced_repeatedly", "callback_unanswered"];

/** A day as YYYY-MM-DD in the platform's time zone, ``offset`` days from ``base`` (today). */
export function day(offset = 0, base = new Date()) {
  const moved = new Date(base.getTime() + offset * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: TIME_ZONE, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(moved);
}

function percent(rate) {
  return rate === null || rate === undefined ? t("no_data") : `${Math.round(rate * 1000) / 10}%`;
}

async function box(id, title, load, draw, wide = false) {
  const section = h("section", { class: `card report${wide ? " wide" : ""}`, "aria-labelledby": `${id}-h`, id },
    h("h2", { id: `${id}-h` }, title));
  try {
    section.append(draw(await load()));
  } catch (error) {
    section.classList.add("unavailable");
    section.append(h("p", {}, t("not_available", { why: failure(error) })));
  }
  return section;
}

function counts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([label, value]) => [h("dt", {}, label), h("dd", {}, String(value))]));
}

function rateRows(r) {
  return h("div", { id: "rates" }, RATES.map((name) => {
    const rate = r[name] || {};
    return h("div", { class: "rate", "data-rate": name },
      h("p", {}, h("strong", { id: `${name}-label` }, t(name)), " ", h("span", { class: "value" }, percent(rate.rate)),
        " ", h("span", { class: "muted" }, t("rate_of", { num: rate.numerator ?? 0, den: rate.denominator ?? 0 }))),
      h("meter", { min: 0, max: 1, value: rate.rate ?? 0, "aria-labelledby": `${name}-label` }));
  }), h("p", { class: "muted" }, `${r.from} – ${r.to}`));
}

const shares = (report) => RATES.map((name) => report?.[name]?.rate ?? null);

async function ratesOf(params) {
  return get(`/api/v1/reports/rates?${new URLSearchParams(params)}`);
}

/** The rates of several slices at once; a slice that fails answers null (its bars stay blank). */
async function slices(list) {
  const settled = await Promise.allSettled(list.map((params) => ratesOf(params)));
  return settled.map((outcome) => (outcome.status === "fulfilled" ? outcome.value : null));
}

export async function reportsPage() {
  const [tree, services] = await Promise.all([get("/api/v1/places"), get("/api/v1/services?limit=100")]);
  const categories = [...new Set(services.items.map((s) => s.group).filter(Boolean))];
  const names = RATES.map((name) => t(name));
  const weeks = Array.from({ length: TREND_WEEKS }, (_, i) => {
    const back = (TREND_WEEKS - 1 - i) * 7;
    return { from: day(-back - 6), to: day(-back) };
  });
  const sections = await Promise.all([
    box("report-rates", t("rates"), () => ratesOf({}), rateRows),
    box("report-trend", t("trend"), () => slices(weeks), (found) => lines("chart-trend", t("trend_title"),
      weeks.map((w) => w.from.slice(5)), RATES.map((name, s) => ({ name: names[s],
        values: found.map((report) => shares(report)[s]) })), t("chart_numbers")), true),
    box("report-by-grid", t("by_grid"), () => slices(tree.grids.map((g) => ({ grid: g.code }))), (found) =>
      bars("chart-grid", t("by_grid"), names, tree.grids.map((g, i) => ({ label: g.name, values: shares(found[i]) })),
        t("chart_numbers")), true),
    box("report-by-category", t("by_category"), () => slices(categories.map((c) => ({ category: c }))), (found) =>
      bars("chart-category", t("by_category"), names, categories.map((c, i) => ({ label: c, values: shares(found[i]) })),
        t("chart_numbers")), true),
    box("report-daily", t("daily"), () => get("/api/v1/reports/daily"), (r) => h("div", {}, dailyCounts(r),
      h("p", {}, h("a", { href: "#/s/daily", id: "to-daily" }, t("open_list"))))),
    box("report-weekly", t("weekly"), () => get("/api/v1/reports/weekly"), (r) => h("div", {},
      counts([...AGENDA, "repeat_problems"].map((name) => [t(name), r[name]?.count ?? 0])),
      h("p", {}, h("a", { href: "#/s/weekly", id: "to-weekly" }, t("open_agenda"))))),
  ]);
  return h("div", {}, h("h1", {}, t("reports_title")), h("div", { class: "reports" }, sections));
}

function dailyCounts(r) {
  return counts([[t("open"), r.open], [t("closed_today"), r.cleared?.closed_today ?? 0],
    [t("planned"), r.cleared?.planned ?? 0], [t("deferred"), r.cleared?.deferred ?? 0],
    [t("awaiting_callback"), r.cleared?.awaiting_callback ?? 0], [t("uncleared"), r.uncleared?.count ?? 0]]);
}

/** A report's ticket line: its number (a link), state, category, owner and clock. */
function ticketLine(ticket, withOwner = true) {
  const clock = countdown({ ...ticket, status: "open" });
  return h("li", { class: "card ticket-line", "data-number": ticket.number },
    h("a", { href: `#/s/ticket/${ticket.id}` }, h("strong", {}, ticket.number)), " ",
    h("span", { class: "badge" }, stateLabel(ticket.state)), " ",
    h("span", { class: "muted" }, withOwner ? `${ticket.category || ""} · ${t("owner")}: ${ticket.owner || "—"}`
      : ticket.category || ""), " ",
    h("span", { class: `due due-${clock.level}` }, clock.text),
    ticket.bounce_count ? h("span", { class: "muted" }, ` · ${t("bounces", { n: ticket.bounce_count })}`) : null);
}

function period(id, label, type, value, grids, chosenGrid) {
  const input = h("input", { id, name: id, type, value, required: true });
  const grid = select(`${id}-grid`, grids.map((g) => [g.code, g.name]), { value: chosenGrid, placeholder: t("all") });
  const form = h("form", { class: "filters card", id: `${id}-form`, onsubmit: (event) => {
    event.preventDefault();
    sessionStorage.setItem(`huisheng.${id}`, JSON.stringify({ value: input.value, grid: grid.value }));
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } }, field(label, input), field(t("grid"), grid), h("button", { type: "submit", class: "secondary" }, t("show")));
  return form;
}

function remembered(id, fallback) {
  try { return { value: fallback, grid: "", ...JSON.parse(sessionStorage.getItem(`huisheng.${id}`) || "{}") }; } catch { return { value: fallback, grid: "" }; }
}

/** 日清: what was cleared by the clearance hour, and what was not, grid by grid and owner by owner. */
export async function dailyPage() {
  const tree = await get("/api/v1/places");
  const chosen = remembered("daily-date", day());
  const query = new URLSearchParams({ date: chosen.value });
  if (chosen.grid) query.set("grid", chosen.grid);
  const report = await get(`/api/v1/reports/daily?${query}`);
  const names = Object.fromEntries(tree.grids.map((g) => [g.code, g.name]));
  const groups = report.uncleared?.by_grid || [];
  return h("section", { id: "daily" }, h("h1", {}, t("daily_title", { date: report.date })),
    period("daily-date", t("date"), "date", chosen.value, tree.grids, chosen.grid),
    h("div", { class: "card" }, h("h2", {}, t("cleared")), dailyCounts(report),
      h("p", { class: "muted" }, t("clearance_at", { at: when(report.clearance_at) }))),
    h("h2", {}, t("uncleared_list", { n: report.uncleared?.count ?? 0 })),
    groups.length === 0 ? h("p", { id: "all-cleared" }, t("all_cleared")) : h("div", { id: "uncleared" },
      groups.map((group) => h("section", { class: "card", "data-grid": group.grid || "" },
        h("h3", {}, `${names[group.grid] || group.grid || t("unplaced")} (${group.count})`),
        group.owners.map((owner) => h("div", {}, h("h4", {}, `${t("owner")}: ${owner.owner || t("nobody")} (${owner.count})`),
          h("ul", { class: "list" }, owner.tickets.map((ticket) => ticketLine(ticket, false)))))))));
}

/** 周议: the week's agenda — overdue, reopened, unsatisfied, bounced, unanswered, repeat problems, coverage gaps. */
export async function weeklyPage() {
  const tree = await get("/api/v1/places");
  const chosen = remembered("weekly-week", "");
  const query = new URLSearchParams();
  if (chosen.value) query.set("week", chosen.value);
  if (chosen.grid) query.set("grid", chosen.grid);
  const report = await get(`/api/v1/reports/weekly?${query}`);
  const buildings = Object.fromEntries(tree.grids.flatMap((g) => g.buildings.map((b) => [b.code, b.name])));
  const names = Object.fromEntries(tree.grids.map((g) => [g.code, g.name]));
  const item = (name) => {
    const found = report[name] || { count: 0, tickets: [] };
    return h("section", { class: "card agenda-item", id: `agenda-${name}` },
      h("h2", {}, `${t(name)} (${found.count})`),
      found.tickets.length ? h("ul", { class: "list" }, found.tickets.map((ticket) => ticketLine(ticket))) : h("p", { class: "muted" }, t("none")));
  };
  const gaps = report.volunteer_coverage_gaps || {};
  return h("section", { id: "weekly" }, h("h1", {}, t("weekly_title", { week: report.week, from: report.from, to: report.to })),
    period("weekly-week", t("week"), "week", chosen.value || report.week, tree.grids, chosen.grid),
    AGENDA.map(item),
    h("section", { class: "card agenda-item", id: "agenda-repeat_problems" },
      h("h2", {}, `${t("repeat_problems")} (${report.repeat_problems?.count ?? 0})`),
      (report.repeat_problems?.items || []).length ? h("table", {}, h("thead", {}, h("tr", {},
        [t("building"), t("category"), t("count")].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, report.repeat_problems.items.map((r) => h("tr", {}, h("td", {}, buildings[r.building] || r.building),
        h("td", {}, r.category), h("td", {}, r.count))))) : h("p", { class: "muted" }, t("none"))),
    h("section", { class: "card agenda-item", id: "agenda-coverage" }, h("h2", {}, t("coverage_gaps")),
      gaps.note ? h("p", { class: "muted" }, t("not_available", { why: gaps.note })) : null,
      (gaps.items || []).length ? gapTable(gaps.items, names) : h("p", { class: "muted" }, t("none"))));
}

/** The coverage gaps as a matrix: a row per skill, a column per grid, each short cell with how many are free. */
export function gapTable(gaps, names) {
  const skills = [...new Set(gaps.map((g) => g.skill))];
  const grids = [...new Set(gaps.map((g) => g.grid))].sort();
  const short = new Map(gaps.map((g) => [`${g.skill}|${g.grid}`, g]));
  return h("div", { class: "table-wrap" }, h("table", { class: "gaps" },
    h("caption", { class: "muted" }, t("gaps_caption", { n: gaps[0]?.needed ?? "" })),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("skill")), grids.map((g) => h("th", { scope: "col" }, names[g] || g)))),
    h("tbody", {}, skills.map((skill) => h("tr", { "data-skill": skill }, h("th", { scope: "row" }, skillLabel(skill)),
      grids.map((grid) => {
        const gap = short.get(`${skill}|${grid}`);
        return h("td", { class: gap ? "bad" : "good", "data-grid": grid }, gap ? `${gap.available} / ${gap.needed}` : "✓");
      }))))));
}

// The office's pages: the board by state with deadline countdowns, and a ticket with every action the role
// allows (the server's allowed_actions), its volunteer candidates and its echoes. Reports: reports.js.
import { api, get } from "./api.js";
import { failure, flash } from "./app.js";
import { field, h, select } from "./dom.js";
import { channelLabel, deliveryLabel, duration, eventLabel, skillLabel, stateLabel, t, when } from "./i18n.js";
import { timeline } from "./resident.js";
import { candidates, teamPreview } from "./volunteers.js";

const STATES = ["received", "reopened", "dispatched", "accepted", "in_progress", "paused", "resolved", "confirmed",
  "closed_not_fixed"];
const SOURCES = ["resident", "phone_in", "walk_in", "patrol", "hotline", "open311", "staff"];
const WARN_SHARE = 0.25; // the last quarter of the time allowed is the warning zone

let places = null;
async function placeTree() { places = places || await get("/api/v1/places"); return places; }

/** The deadline countdown of an open ticket: {text, level: ok|warn|breach|none}. */
export function countdown(ticket, now = Date.now()) {
  if (!ticket.due_at || ticket.status === "closed" || ["resolved", "confirmed", "closed_not_fixed"].includes(ticket.state)) {
    return { text: t("no_due"), level: "none" };
  }
  const due = Date.parse(ticket.due_at);
  const allowed = Math.max(1, due - Date.parse(ticket.created_at));
  const left = due - now;
  if (left < 0) return { text: t("overdue_by", { t: duration(-left) }), level: "breach" };
  return { text: t("left", { t: duration(left) }), level: left < allowed * WARN_SHARE ? "warn" : "ok" };
}

function assigneeText(assignee) {
  if (!assignee) return "—";
  return `${t(assignee.kind === "team" ? "team" : assignee.kind === "unit" ? "unit" : "worker")} ${assignee.id}`;
}

function card(ticket) {
  const clock = countdown(ticket);
  return h("li", { class: `card ticket-card due-${clock.level}`, "data-number": ticket.number },
    h("a", { href: `#/s/ticket/${ticket.id}`, class: "ticket-link" }, h("strong", {}, ticket.number)),
    h("p", { class: "muted" }, `${ticket.category || ""} · ${ticket.grid || "—"} · ${t(`src_${ticket.source}`)}`),
    ticket.assignee ? h("p", { class: "muted" }, `${t("assignee")}: ${assigneeText(ticket.assignee)}`) : null,
    h("p", { class: "excerpt" }, ticket.description.length > 60 ? `${ticket.description.slice(0, 60)}…` : ticket.description),
    h("p", { class: `due due-${clock.level}` }, h("span", { class: "visually-hidden" }, `${t("due")}: `), clock.text));
}

export async function boardPage() {
  const params = new URLSearchParams(location.search);
  const tree = await placeTree();
  const services = await get("/api/v1/services?limit=100");
  const categories = [...new Set(services.items.map((s) => s.group).filter(Boolean))];
  const stored = JSON.parse(sessionStorage.getItem("huisheng.filters") || "{}");
  const filters = { ...stored, ...Object.fromEntries(params) };
  const query = new URLSearchParams({ limit: "100" });
  for (const name of ["grid", "category", "owner", "source"]) if (filters[name]) query.set(name, filters[name]);
  const page = await get(`/api/v1/tickets?${query}`);
  const form = h("form", { id: "filters", class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const data = Object.fromEntries([...new FormData(form)].filter(([, v]) => v));
    sessionStorage.setItem("huisheng.filters", JSON.stringify(data));
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } },
  field(t("grid"), select("f-grid", tree.grids.map((g) => [g.code, g.name]), { value: filters.grid, placeholder: t("all") })),
  field(t("category"), select("f-category", categories.map((c) => [c, c]), { value: filters.category, placeholder: t("all") })),
  field(t("owner"), h("input", { id: "f-owner", value: filters.owner || "", maxlength: 64 })),
  field(t("source"), select("f-source", SOURCES.map((s) => [s, t(`src_${s}`)]), { value: filters.source, placeholder: t("all") })),
  h("button", { type: "submit", class: "secondary" }, t("apply")));
  for (const control of form.querySelectorAll("select, input")) control.name = control.id.slice(2);
  const columns = STATES.map((state) => {
    const tickets = page.items.filter((ticket) => ticket.state === state);
    return h("section", { class: "column", "aria-labelledby": `col-${state}`, "data-state": state },
      h("h2", { id: `col-${state}` }, `${stateLabel(state)} (${tickets.length})`),
      h("ul", { class: "list" }, tickets.map(card)));
  });
  return h("div", {}, h("h1", {}, t("board_title")), h("details", { open: true },
    h("summary", {}, t("filters")), form), h("div", { class: "board", id: "board" }, columns));
}

function actionForm(ticket, action, etag, tree, teams) {
  const id = (name) => `${action}-${name}`;
  const controls = [];
  if (action === "dispatch") {
    const workers = tree.grids.flatMap((g) => g.workers.map((w) => [w, `${g.name} · ${t("worker")} ${w}${w === ticket.suggested_owner ? ` (${t("suggested")})` : ""}`]));
    workers.sort((a, b) => (b[0] === ticket.suggested_owner) - (a[0] === ticket.suggested_owner));
    const kind = select(id("kind"), [["worker", t("worker")], ["team", t("team")]], { value: "worker" });
    const whom = select(id("id"), workers, { required: true });
    const preview = h("div", { class: "preview" });
    const previewTeam = async () => {
      if (kind.value !== "team" || !whom.value) { preview.replaceChildren(); return; }
      try { preview.replaceChildren(await teamPreview(whom.value)); } catch (error) {
        preview.replaceChildren(h("p", { class: "muted" }, t("not_available", { why: failure(error) })));
      }
    };
    kind.addEventListener("change", () => {
      whom.replaceChildren(...(kind.value === "team" ? teams.map((team) => [team.code, `${team.name}${team.skills?.length
        ? ` (${team.skills.map(skillLabel).join("、")})` : ""}`]) : workers)
        .map(([value, label]) => h("option", { value }, label)));
      previewTeam();
    });
    whom.addEventListener("change", previewTeam);
    controls.push(field(t("to_kind"), kind), field(t("to_whom"), whom), preview);
  } else if (["bounce", "pause"].includes(action)) {
    controls.push(field(t("reason"), h("input", { id: id("reason"), required: true, maxlength: 500 })));
    if (action === "pause") controls.push(field(t("until"), h("input", { id: id("until"), type: "datetime-local" })));
  } else if (action === "resolve") {
    controls.push(field(t("summary"), h("textarea", { id: id("summary"), required: true, rows: 2, maxlength: 2000 })));
  } else if (action === "close") {
    controls.push(field(t("close_reason"), select(id("reason"), ["not_responsible", "no_further_action", "duplicate",
      "cancelled"].map((r) => [r, t(r)]), { required: true })), field(t("note"), h("input", { id: id("note"), maxlength: 2000 })));
  } else if (action === "merge") {
    controls.push(field(t("into"), h("input", { id: id("into"), required: true, maxlength: 64 })));
  } else if (action === "plan") {
    controls.push(field(t("text"), h("input", { id: id("note"), required: true, maxlength: 1000 })),
      field(t("owner"), h("input", { id: id("owner"), required: true, maxlength: 64,
        value: ticket.assignee?.id || ticket.suggested_owner || "" })),
      field(t("due_at"), h("input", { id: id("due_at"), type: "datetime-local", required: true })));
  }
  const value = (name) => document.getElementById(id(name))?.value;
  const bodies = {
    dispatch: () => ({ kind: value("kind"), id: value("id") }),
    bounce: () => ({ reason: value("reason") }),
    pause: () => ({ reason: value("reason"), ...(value("until") ? { until: new Date(value("until")).toISOString() } : {}) }),
    resolve: () => ({ summary: value("summary") }),
    close: () => ({ reason: value("reason"), note: value("note") || "" }),
    merge: () => ({ into: value("into") }),
    plan: () => ({ note: value("note"), owner: value("owner"), due_at: new Date(value("due_at")).toISOString() }),
  };
  const heading = `${action}-title`;
  return h("form", { class: "action card", "data-action": action, "aria-labelledby": heading, onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api("POST", `/api/v1/tickets/${ticket.id}/actions/${action}`,
        { body: bodies[action] ? bodies[action]() : {}, headers: { "If-Match": etag } });
      flash(t("done", { action: t(action) }));
      document.getElementById("ticket").replaceWith(await staffTicketPage(ticket.id));
    } catch (error) { flash(failure(error), "error"); }
  } }, h("h3", { id: heading }, t(action)), controls, h("button", { type: "submit", id: `do-${action}`, class: action === "close" ? "danger" : "primary" },
    t(action)));
}

function commentForm(ticket, etag) {
  const text = h("textarea", { id: "comment-text", required: true, rows: 2, maxlength: 2000 });
  const visibility = select("comment-visibility", [["internal", t("internal")], ["resident", t("resident_visible")]]);
  return h("form", { class: "action card", "data-action": "comment", "aria-labelledby": "comment-title",
    onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api("POST", `/api/v1/tickets/${ticket.id}/comments`, { body: { text: text.value, visibility: visibility.value },
        headers: { "If-Match": etag } });
      flash(t("done", { action: t("comment") }));
      document.getElementById("ticket").replaceWith(await staffTicketPage(ticket.id));
    } catch (error) { flash(failure(error), "error"); }
  } }, h("h3", { id: "comment-title" }, t("comment")), field(t("text"), text), field(t("visibility"), visibility),
  h("button", { type: "submit", id: "do-comment", class: "secondary" }, t("comment")));
}

async function echoes(ticket) {
  try {
    const page = await get(`/api/v1/echoes?ticket_id=${encodeURIComponent(ticket.id)}&limit=100`);
    return h("table", { id: "echoes" }, h("caption", {}, t("echoes")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("timeline")), h("th", { scope: "col" }, t("recipient")),
        h("th", { scope: "col" }, t("delivery")), h("th", { scope: "col" }, t("channel")))),
      h("tbody", {}, page.items.map((echo) => h("tr", { "data-event": echo.source_event_type },
        h("td", {}, eventLabel(echo.source_event_type)),
        h("td", {}, echo.recipient === ticket.reporter ? t("reporter") : echo.recipient),
        h("td", {}, deliveryLabel(echo.status)),
        h("td", {}, (echo.steps || []).map((s) => `${channelLabel(s.channel)}: ${deliveryLabel(s.status)}`)
          .join("，"))))));
  } catch (error) {
    return h("p", { class: "muted" }, t("not_available", { why: failure(error) }));
  }
}

export async function staffTicketPage(id) {
  const [{ data: ticket, etag }, tree, teams] = await Promise.all([
    api("GET", `/api/v1/tickets/${encodeURIComponent(id)}`), placeTree(),
    get("/api/v1/volunteer-teams?limit=100").then((p) => p.items).catch(() => [])]);
  const clock = countdown(ticket);
  const actions = ticket.allowed_actions || [];
  return h("section", { id: "ticket", "data-state": ticket.state },
    h("p", {}, h("a", { href: "#/s/board" }, `← ${t("back")}`)),
    h("h1", {}, t("detail_title", { number: ticket.number })),
    h("dl", { class: "facts card" },
      h("dt", {}, t("state")), h("dd", { id: "ticket-state" }, stateLabel(ticket.state)),
      h("dt", {}, t("due")), h("dd", { class: `due due-${clock.level}` }, clock.text),
      h("dt", {}, t("category")), h("dd", {}, `${ticket.category || ""} (${ticket.service_code})`),
      h("dt", {}, t("priority")), h("dd", {}, t(`p_${ticket.priority}`)),
      h("dt", {}, t("grid")), h("dd", {}, ticket.grid || "—"),
      h("dt", {}, t("source")), h("dd", {}, t(`src_${ticket.source}`)),
      h("dt", {}, t("assignee")), h("dd", { id: "ticket-assignee" }, assigneeText(ticket.assignee)),
      h("dt", {}, t("description")), h("dd", {}, ticket.description),
      h("dt", {}, t("address")), h("dd", {}, ticket.address_string || ""),
      ticket.merged_into ? [h("dt", {}, t("merged_into")), h("dd", { id: "merged-into" },
        h("a", { href: `#/s/ticket/${ticket.merged_into}` }, ticket.merged_into))] : null),
    h("h2", {}, t("actions")),
    h("div", { class: "actions", id: "actions" },
      actions.map((action) => actionForm(ticket, action, etag, tree, teams)), commentForm(ticket, etag)),
    ticket.comments.length ? h("div", {}, h("h2", {}, t("comments")), h("ul", { class: "list" },
      ticket.comments.map((c) => h("li", { class: "comment" },
      `${when(c.at)} ${c.visibility === "resident" ? `[${t("resident_visible")}] ` : ""}${c.text}`)))) : null,
    await candidates(ticket),
    h("h2", {}, t("timeline")), timeline(ticket.timeline, true, ticket.reporter),
    await echoes(ticket));
}

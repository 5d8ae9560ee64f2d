// The residents' pages, mobile first: report a matter, follow it, read the echoes, answer the callback, own data.
import { api, forget, get, session } from "./api.js";
import { failure, flash } from "./app.js";
import { field, h, radios, select } from "./dom.js";
import { channelLabel, eventLabel, stateLabel, t, when } from "./i18n.js";

let places = null;

async function buildings() {
  places = places || await get("/api/v1/places");
  return places.grids.flatMap((grid) => grid.buildings.map((b) => [b.code, b.name]));
}

export async function newRequestPage() {
  const [services, me, buildingList] = await Promise.all([
    get("/api/v1/services?limit=100"), get("/api/v1/me"), buildings()]);
  const mine = me.address || {};
  const service = select("service", services.items.map((s) => [s.service_code, `${s.group ? s.group + " · " : ""}${s.service_name}`]),
    { required: true, placeholder: t("choose") });
  const description = h("textarea", { id: "description", name: "description", required: true, minlength: 2,
    maxlength: 4000, rows: 4 });
  const building = select("building", buildingList, { required: true, value: mine.building || "",
    placeholder: t("choose") });
  const address = h("input", { id: "address", name: "address", required: true, maxlength: 300,
    value: mine.unit ? `${mine.unit}单元${mine.room || ""}` : "" });
  const form = h("form", { id: "request-form", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const buildingName = building.selectedOptions[0]?.textContent || "";
      const { data } = await api("POST", "/api/v1/tickets", { body: { service_code: service.value,
        description: description.value.trim(), building: building.value,
        address_string: `${buildingName}${address.value.trim()}` } });
      flash(t("submitted", { number: data.number }));
      form.reset();
      document.getElementById("flash").focus();
    } catch (error) { flash(failure(error), "error"); } finally { submit.disabled = false; }
  } },
  h("h1", {}, t("new_title")),
  field(t("category"), service),
  field(t("description"), description, t("description_hint")),
  field(t("building"), building),
  field(t("address"), address),
  h("button", { type: "submit", id: "submit-request", class: "primary" }, t("submit")));
  return form;
}

function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, stateLabel(state));
}

export async function minePage() {
  const page = await get("/api/v1/tickets?limit=100");
  return h("section", {}, h("h1", {}, t("mine_title")),
    page.items.length === 0 ? h("p", {}, t("none")) : h("ul", { class: "list", id: "my-tickets" },
      page.items.map((ticket) => h("li", { class: "card" },
        h("a", { href: `#/r/ticket/${ticket.id}`, class: "ticket-link", "data-number": ticket.number },
          h("strong", {}, ticket.number), " ", stateBadge(ticket.state)),
        h("p", {}, ticket.description),
        h("p", { class: "muted" }, `${t("created")}: ${when(ticket.created_at)}`)))));
}

/** A ticket's timeline as a resident reads it: the changes, and each echo that reached them. */
export function timeline(entries, staff = false, reporter = null) {
  return h("ol", { class: "timeline", id: "timeline" }, entries.map((entry) => {
    const echo = entry.type.startsWith("echo.");
    const other = staff && entry.recipient && entry.recipient !== reporter; // e.g. the worker told of a dispatch
    const label = echo
      ? t(other ? "e_echo_other" : staff ? "e_echo_staff" : "e_echo", { what: eventLabel(entry.source_event_type),
        channel: channelLabel(entry.channel), who: entry.recipient })
      : eventLabel(entry.type);
    const extra = entry.reason || entry.summary || entry.outcome && t(entry.outcome) || entry.text || "";
    return h("li", { class: echo ? "echo" : "change", "data-type": entry.type },
      h("time", { datetime: entry.at }, when(entry.at)), " ", h("span", {}, label),
      extra ? h("span", { class: "muted" }, ` — ${extra}`) : null);
  }));
}

export async function residentTicketPage(id) {
  const { data: ticket, etag } = await api("GET", `/api/v1/tickets/${encodeURIComponent(id)}`);
  const section = h("section", { id: "ticket", "data-state": ticket.state },
    h("p", {}, h("a", { href: "#/r/mine" }, `← ${t("back")}`)),
    h("h1", {}, t("detail_title", { number: ticket.number })),
    h("p", {}, stateBadge(ticket.state)),
    h("p", {}, ticket.description),
    h("p", { class: "muted" }, ticket.address_string || ""),
    ticket.comments.filter((c) => c.visibility === "resident").map((c) => h("p", { class: "comment card" },
      h("strong", {}, t("from_office")), c.text)),
    h("h2", {}, t("timeline")),
    timeline(ticket.timeline));
  if (ticket.state === "resolved") section.append(callbackForm(ticket, etag));
  return section;
}

function callbackForm(ticket, etag) {
  const form = h("form", { id: "callback-form", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { outcome: data.get("outcome"), note: data.get("note") || "" };
    if (data.get("satisfaction")) body.satisfaction = data.get("satisfaction");
    try {
      await api("POST", `/api/v1/tickets/${ticket.id}/callback`, { body, headers: { "If-Match": etag } });
      flash(t("callback_done"));
      const replaced = await residentTicketPage(ticket.id);
      document.getElementById("ticket").replaceWith(replaced);
    } catch (error) { flash(failure(error), "error"); }
  } },
  h("h2", {}, t("callback_title")),
  radios("outcome", t("outcome"), [["fixed", t("fixed")], ["partly_fixed", t("partly_fixed")],
    ["not_fixed", t("not_fixed")]], true),
  radios("satisfaction", t("satisfaction"), [["satisfied", t("satisfied")],
    ["basically_satisfied", t("basically_satisfied")], ["dissatisfied", t("dissatisfied")]]),
  field(t("note"), h("textarea", { id: "callback-note", name: "note", rows: 2, maxlength: 2000 })),
  h("button", { type: "submit", id: "send-callback", class: "primary" }, t("send")));
  return form;
}

export async function inboxPage() {
  const inbox = await get("/api/v1/me/inbox?limit=100");
  return h("section", {}, h("h1", {}, t("inbox_title")), h("p", { id: "unread" }, t("unread", { n: inbox.unread })),
    inbox.items.length === 0 ? h("p", {}, t("none")) : h("ul", { class: "list", id: "inbox" },
      inbox.items.map((message) => {
        const button = message.read_at ? h("span", { class: "muted" }, t("read")) : h("button", {
          type: "button", class: "secondary", onclick: async () => {
            try {
              await api("POST", `/api/v1/me/inbox/${encodeURIComponent(message.id)}/read`);
              button.replaceWith(h("span", { class: "muted" }, t("read")));
            } catch (error) { flash(failure(error), "error"); }
          } }, t("mark_read"));
        return h("li", { class: `card message${message.read_at ? "" : " unread"}`, "data-event": message.source_event_type },
          h("h2", { class: "message-title" }, message.title), h("p", {}, message.body),
          h("p", { class: "muted" }, when(message.created_at)), button);
      })));
}

export async function dataPage() {
  const me = await get("/api/v1/me");
  const confirm = h("input", { type: "checkbox", id: "erase-confirm" });
  const erase = h("button", { type: "button", id: "erase", class: "danger", disabled: true, onclick: async () => {
    try {
      await api("DELETE", "/api/v1/me");
      forget();
      flash(t("erased"), "ok", true);
      location.hash = "#/signin";
    } catch (error) { flash(failure(error), "error"); }
  } }, t("erase"));
  confirm.addEventListener("change", () => { erase.disabled = !confirm.checked; });
  const address = me.place ? `${me.place.address || ""} ${me.address?.unit || ""}-${me.address?.room || ""}` : "";
  return h("section", {}, h("h1", {}, t("data_title")),
    h("dl", { class: "card facts" }, h("dt", {}, t("name")), h("dd", { id: "me-name" }, me.name),
      h("dt", {}, t("phone")), h("dd", {}, me.phone), h("dt", {}, t("address")), h("dd", {}, address)),
    h("p", {}, h("button", { type: "button", id: "export", class: "secondary", onclick: async () => {
      try {
        const exported = await get("/api/v1/me/export");
        const blob = new Blob([JSON.stringify(exported, null, 2)], { type: "application/json" });
        const link = h("a", { href: URL.createObjectURL(blob), download: `huisheng-${session().claims.sub}.json` });
        document.body.append(link);
        link.click();
        link.remove();
        flash(t("exported"));
      } catch (error) { flash(failure(error), "error"); }
    } }, t("export"))),
    h("div", { class: "card danger-zone" }, h("h2", {}, t("erase_title")), h("p", {}, t("erase_text")),
      h("p", {}, h("label", { class: "check" }, confirm, t("erase_confirm"))), erase));
}

// The residents' pages, mobile first: report a matter, follow it, read the echoes, answer the callback, own data.
import { ApiError, api, forget, get, session } from "./api.js";
import { failure, flash } from "./app.js";
import { field, h, radios, select } from "./dom.js";
import { channelLabel, eventLabel, skillLabel, stateLabel, t, when } from "./i18n.js";

let places = null;

async function buildings() {
  places = places || await get("/api/v1/places");
  return places.grids.flatMap((grid) => grid.buildings.map((b) => [b.code, b.name]));
}

export async function newRequestPage() {
  const [services, me, buildingList] = await Promise.all([
    get("/api/v1/services?limit=100"), get("/api/v1/me"), buildings()]);
  const mine = me.address || {};
  const known = new Map(services.items.map((s) => [s.service_code, s]));
  const service = select("service", services.items.map((s) => [s.service_code, `${s.group ? s.group + " · " : ""}${s.service_name}`]),
    { required: true, placeholder: t("choose") });
  const questions = h("fieldset", { id: "questions", class: "questions", hidden: true });
  let asked = []; // the chosen category's questions, in their order
  let shown = 0; // the latest choice wins: a slow answer for an earlier one must not replace its questions
  service.addEventListener("change", async () => {
    const mine = ++shown;
    asked = [];
    questions.hidden = true;
    questions.replaceChildren();
    const chosen = known.get(service.value);
    if (!chosen?.metadata) return;
    try {
      const found = await definition(chosen.service_code);
      if (mine !== shown) return;
      asked = found;
      questions.replaceChildren(h("legend", {}, t("questions", { name: chosen.service_name })),
        ...asked.map(questionField));
      questions.hidden = asked.length === 0;
    } catch (error) { flash(failure(error), "error"); }
  });
  const description = h("textarea", { id: "description", name: "description", required: true, minlength: 2,
    maxlength: MAX_DESCRIPTION, rows: 4 });
  // A phone opens its camera (capture); a computer its file chooser. Sent when the form is.
  const photo = h("input", { type: "file", id: "photo", name: "photo", accept: "image/*", capture: "environment" });
  const building = select("building", buildingList, { required: true, value: mine.building || "",
    placeholder: t("choose") });
  const address = h("input", { id: "address", name: "address", required: true, maxlength: 300,
    value: mine.unit ? `${mine.unit}单元${mine.room || ""}` : "" });
  const form = h("form", { id: "request-form", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    const answers = answered(asked);
    if (!answers) return; // the browser shows which question wants an answer
    const file = photo.files[0];
    photo.setCustomValidity(file && file.size > MAX_PHOTO_BYTES ? t("photo_too_big") : "");
    if (!photo.reportValidity()) return;
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const buildingName = building.selectedOptions[0]?.textContent || "";
      const attachments = file ? [await upload(file)] : [];
      const { data } = await api("POST", "/api/v1/tickets", { body: { service_code: service.value,
        description: description.value.trim(), attributes: answers, attachments, building: building.value,
        address_string: `${buildingName}${address.value.trim()}` } });
      flash(t("submitted", { number: data.number }));
      form.reset();
      questions.hidden = true;
      questions.replaceChildren();
      asked = [];
      document.getElementById("flash").focus();
    } catch (error) { flash(failure(error), "error"); } finally { submit.disabled = false; }
  } },
  h("h1", {}, t("new_title")),
  field(t("category"), service),
  questions,
  field(t("description"), description, t("description_hint")),
  field(t("building"), building),
  field(t("address"), address),
  field(t("photo"), photo, t("photo_hint")),
  h("button", { type: "submit", id: "submit-request", class: "primary" }, t("submit")));
  return form;
}

const MAX_DESCRIPTION = 4000;
const MAX_PHOTO_BYTES = 10 * 1024 * 1024; // the API's limit (kernel/contracts.py MAX_ATTACHMENT_BYTES): 413 beyond
const CHINA_OFFSET = "+08:00"; // a datetime question is answered in the platform's time zone (Asia/Shanghai)

/** A category's questions (Open311 attributes), from the catalogue's public service definition. */
async function definition(code) {
  const answer = await fetch(`/open311/v2/services/${encodeURIComponent(code)}.json`, { headers: { Accept: "application/json" } });
  if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
  const found = await answer.json();
  return (found.attributes || []).filter((a) => a.variable !== false).sort((a, b) => a.order - b.order);
}

/** One question as a labelled control: a number, a line, a text, a date and time, one choice or several. */
function questionField(attribute) {
  const id = `attr-${attribute.code}`;
  const required = Boolean(attribute.required);
  const hint = attribute.datatype_description || null;
  const label = `${attribute.description}${required ? "" : ` ${t("optional")}`}`;
  if (attribute.datatype === "singlevaluelist") {
    return field(label, select(id, attribute.values.map((v) => [v.key, v.name]), { required, placeholder: t("choose") }), hint);
  }
  if (attribute.datatype === "multivaluelist") {
    return h("fieldset", { class: "radios", id, "data-required": String(required) }, h("legend", {}, label),
      attribute.values.map((v) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: id, value: v.key, id: `${id}-${v.key}` }), v.name)));
  }
  const control = attribute.datatype === "text"
    ? h("textarea", { id, rows: 2, maxlength: 1000, required })
    : h("input", { id, required, maxlength: 1000, ...{
      number: { type: "number", inputmode: "decimal", step: "any" },
      datetime: { type: "datetime-local" },
    }[attribute.datatype] || {} });
  return field(label, control, hint);
}

/** The answers as the API's `attributes` ({code: value}, a list of keys for several choices); null (and the
 * browser says where) when one is missing or wrong. Unanswered optional questions are left out. */
function answered(asked) {
  const answers = {};
  for (const attribute of asked) {
    const id = `attr-${attribute.code}`;
    let value;
    if (attribute.datatype === "multivaluelist") {
      const box = document.getElementById(id);
      const ticked = [...box.querySelectorAll("input:checked")];
      const first = box.querySelector("input");
      first.setCustomValidity(attribute.required && !ticked.length ? t("pick_one") : "");
      if (!first.reportValidity()) return null;
      value = ticked.map((input) => input.value);
    } else {
      const control = document.getElementById(id);
      if (!control.reportValidity()) return null;
      value = control.value.trim();
      if (value && attribute.datatype === "datetime") value = `${value.length === 16 ? `${value}:00` : value}${CHINA_OFFSET}`;
    }
    if (value.length) answers[attribute.code] = value;
  }
  return answers;
}

/** Upload a photo as it is (its bytes, its type): the reference {url, content_type, size} to attach. */
async function upload(file) {
  const headers = { "Content-Type": file.type || "application/octet-stream", Accept: "application/json",
    "Idempotency-Key": crypto.randomUUID() };
  const current = session();
  if (current) headers.Authorization = `Bearer ${current.access}`;
  const answer = await fetch("/api/v1/photos", { method: "POST", headers, body: file });
  const data = await answer.json().catch(() => null);
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

/** A photo of the platform, fetched with the session (an <img src> would carry no token) and shown from memory. */
async function photoImage(attachment, alt) {
  const image = h("img", { class: "photo", alt, "data-url": attachment.url });
  // never wider than a phone's screen (set through the DOM: the console's CSP allows no inline style attribute)
  Object.assign(image.style, { maxWidth: "100%", height: "auto", display: "block", margin: "0.5rem 0" });
  const current = session();
  try {
    const answer = await fetch(attachment.url, { headers: current ? { Authorization: `Bearer ${current.access}` } : {} });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    image.src = URL.createObjectURL(await answer.blob());
  } catch { image.alt = t("photo_missing"); }
  return image;
}

/** A ticket's photos (the report's and the resident-visible comments'): images of the platform, else a link. */
async function photos(attachments) {
  const shown = attachments.filter((a) => a.url.startsWith("/api/v1/photos/") && a.content_type.startsWith("image/"));
  const others = attachments.filter((a) => !shown.includes(a));
  if (!attachments.length) return null;
  const images = await Promise.all(shown.map((a, i) => photoImage(a, t("photo_alt", { n: i + 1 }))));
  return h("div", { class: "photos", id: "photos" }, images,
    others.map((a) => a.url.startsWith("https://")
      ? h("a", { href: a.url, rel: "noopener noreferrer", target: "_blank" }, t("attachment"))
      : h("span", { class: "muted" }, t("attachment"))));
}

/** The answers to the category's questions, under the questions' own wording (from the public definition). */
async function answersList(ticket) {
  const given = Object.entries(ticket.attributes || {});
  if (!given.length) return null;
  let asked = [];
  try { asked = await definition(ticket.service_code); } catch { /* a private category: show the codes */ }
  const byCode = new Map(asked.map((a) => [a.code, a]));
  const shown = (attribute, value) => {
    const name = (key) => attribute?.values?.find((v) => v.key === key)?.name || key;
    return Array.isArray(value) ? value.map(name).join("、") : attribute?.values?.length ? name(value) : String(value);
  };
  return h("dl", { class: "answers", id: "answers" }, given.flatMap(([code, value]) => [
    h("dt", {}, byCode.get(code)?.description || code), h("dd", {}, shown(byCode.get(code), value))]));
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
  const visible = ticket.comments.filter((c) => c.visibility === "resident");
  const [answers, pictures] = await Promise.all([answersList(ticket),
    photos([...ticket.attachments, ...visible.flatMap((c) => c.attachments || [])])]);
  const section = h("section", { id: "ticket", "data-state": ticket.state },
    h("p", {}, h("a", { href: "#/r/mine" }, `← ${t("back")}`)),
    h("h1", {}, t("detail_title", { number: ticket.number })),
    h("p", {}, stateBadge(ticket.state)),
    h("p", {}, ticket.description),
    h("p", { class: "muted" }, ticket.address_string || ""),
    answers,
    pictures,
    visible.map((c) => h("p", { class: "comment card" },
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

/** 微心愿: a small wish a volunteer may take on (a lift to the clinic, a phone set up); the resident's own listed. */
export async function wishesPage() {
  const [wishes, teams] = await Promise.all([get("/api/v1/wishes?limit=100"),
    get("/api/v1/volunteer-teams?limit=100").then((page) => page.items)]);
  const skills = [...new Set(teams.flatMap((team) => team.skills || []))];
  const title = h("input", { id: "wish-title", required: true, minlength: 2, maxlength: 60 });
  const text = h("textarea", { id: "wish-description", rows: 3, maxlength: 1000 });
  const skill = select("wish-skill", skills.map((code) => [code, skillLabel(code)]), { placeholder: t("any_help") });
  const form = h("form", { id: "wish-form", class: "card", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const body = { title: title.value.trim(), description: text.value.trim() };
      if (skill.value) body.skill = skill.value;
      await api("POST", "/api/v1/wishes", { body });
      flash(t("wish_published"), "ok", true);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (error) { flash(failure(error), "error"); }
  } }, h("h2", {}, t("wish_new")), field(t("wish_title"), title, t("wish_hint")), field(t("wish_text"), text),
  field(t("wish_skill"), skill), h("button", { type: "submit", id: "publish-wish", class: "primary" }, t("publish")));
  return h("section", {}, h("h1", {}, t("wishes_title")), form, h("h2", {}, t("my_wishes")),
    wishes.items.length === 0 ? h("p", {}, t("none")) : h("ul", { class: "list", id: "my-wishes" },
      wishes.items.map((wish) => h("li", { class: "card", "data-state": wish.state },
        h("strong", {}, wish.title), " ", h("span", { class: "badge" }, t(`w_${wish.state}`)),
        wish.description ? h("p", {}, wish.description) : null,
        h("p", { class: "muted" }, wish.volunteer ? t("wish_taken") : t("wish_candidates", { n: (wish.proposals || []).length }))))));
}

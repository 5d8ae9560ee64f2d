// Operations at a glance, from what the API offers: the gateway's health and readiness, silent tickets and
// echo latency. Queue depths, consumers, dead letters and outbox lag have no HTTP route yet: the page says so
// and names the command that shows them.
import { get } from "./api.js";
import { failure } from "./app.js";
import { h } from "./dom.js";
import { channelLabel, t } from "./i18n.js";

async function panel(id, title, load, draw) {
  const box = h("section", { class: "card report", id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title));
  try {
    box.append(draw(await load()));
  } catch (error) {
    box.classList.add("unavailable");
    box.append(h("p", {}, t("not_available", { why: failure(error) })));
  }
  return box;
}

function missing(id, title, command) {
  return h("section", { class: "card report unavailable", id, "aria-labelledby": `${id}-h` },
    h("h2", { id: `${id}-h` }, title), h("p", {}, t("not_available", { why: t("missing_api", { cmd: "" }) }),
      h("code", {}, command)));
}

async function status(path) {
  const answer = await fetch(path, { headers: { Accept: "application/json" } });
  return { code: answer.status, body: await answer.json() };
}

export async function opsPage() {
  const panels = await Promise.all([
    panel("ops-health", t("health"), () => Promise.all([status("/health"), status("/ready")]), ([health, ready]) =>
      h("dl", { class: "facts" }, h("dt", {}, "/health"),
        h("dd", { class: health.code === 200 ? "good" : "bad" }, `${health.code} ${health.body.status}`),
        h("dt", {}, "/ready"), h("dd", { class: ready.code === 200 ? "good" : "bad" },
          `${ready.code} ${ready.body.status} ${JSON.stringify(ready.body.checks || {})}`))),
    panel("ops-silent", t("silent"), () => get("/api/v1/reports/silent"), (r) => h("div", {},
      h("p", {}, h("strong", { class: r.count ? "bad" : "good" }, `${t("count")}: ${r.count}`)),
      h("ul", { class: "list" }, (r.items || []).slice(0, 20).map((item) => h("li", {},
        `${item.ticket_number || item.ticket_id || ""} ${item.source_event_type || ""} ${item.reason || ""}`))))),
    panel("ops-latency", t("echo_latency"), () => get("/api/v1/reports/echo-latency"), (r) => h("table", {},
      h("thead", {}, h("tr", {}, ["channel", "count", "p50", "p95"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", {}, Object.entries(r.channels || {}).map(([channel, stats]) => {
        const delivered = stats.delivered || stats.sent || {};
        return h("tr", {}, h("td", {}, channelLabel(channel)), h("td", {}, delivered.count ?? 0),
          h("td", {}, t("seconds", { n: delivered.p50 ?? "—" })), h("td", {}, t("seconds", { n: delivered.p95 ?? "—" })));
      })))),
    missing("ops-queues", t("queues"), "huisheng ops queues"),
    missing("ops-dlq", t("dead_letters"), "huisheng ops dlq show QUEUE"),
    missing("ops-outbox", t("outbox_lag"), "huisheng ops outbox"),
  ]);
  return h("div", {}, h("h1", {}, t("ops_title")), h("div", { class: "reports" }, panels),
    h("p", {}, h("button", { type: "button", class: "secondary", id: "ops-refresh",
      onclick: () => window.dispatchEvent(new HashChangeEvent("hashchange")) }, t("refresh"))));
}

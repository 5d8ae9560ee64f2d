// Operations at a glance: the gateway's health and readiness, the queues (depth, consumers, dead letters) and
// the outboxes' lag from GET /api/v1/ops/overview (what `huisheng ops queues` / `ops outbox` print), silent
// tickets and echo latency. A part that cannot be looked at says why, and which command shows it on the server.
import { get } from "./api.js";
import { failure } from "./app.js";
import { h } from "./dom.js";
import { channelLabel, t } from "./i18n.js";

async function panel(id, title, load, draw, wide = false) {
  const box = h("section", { class: `card report${wide ? " wide" : ""}`, id, "aria-labelledby": `${id}-h` },
    h("h2", { id: `${id}-h` }, title));
  try {
    box.append(draw(await load()));
  } catch (error) {
    box.classList.add("unavailable");
    box.append(h("p", {}, t("not_available", { why: failure(error) })));
  }
  return box;
}

function unavailable(why, command) {
  return h("p", {}, t("not_available", { why }), " ", t("on_server"), " ", h("code", {}, command));
}

function queuesTable(report) {
  if (report.error) return unavailable(report.error, "huisheng ops queues");
  // a consumer's dead letters show on its own row; the dead-letter queues themselves have their panel
  const rows = report.queues.filter((q) => !["rpc", "dlq"].includes(q.kind));
  return h("div", {}, h("p", {}, h("strong", { class: report.healthy ? "good" : "bad", id: "queues-verdict" },
    report.healthy ? t("healthy") : t("problems", { n: report.problems.length }))),
  report.problems.length ? h("ul", { class: "problems" }, report.problems.slice(0, 20).map((p) => h("li", { class: "bad" }, p))) : null,
  h("div", { class: "table-wrap" }, h("table", { id: "queues" }, h("thead", {}, h("tr", {},
    ["queue", "kind", "ready", "unacked", "consumers", "dead_letters"].map((k) => h("th", { scope: "col" }, t(`q_${k}`))))),
  h("tbody", {}, rows.map((q) => h("tr", { "data-queue": q.name, "data-kind": q.kind, class: q.problem ? "problem" : null },
    h("td", {}, q.name), h("td", {}, t(`qk_${q.kind}`)), h("td", {}, q.ready), h("td", {}, q.unacked),
    h("td", { class: q.kind === "consumer" && !q.consumers ? "bad" : null }, q.consumers),
    h("td", { class: q.dead_letters ? "bad" : null }, q.dead_letters ?? "—")))))));
}

function deadLetters(report) {
  if (report.error) return unavailable(report.error, "huisheng ops dlq show QUEUE");
  const dlqs = report.queues.filter((q) => q.kind === "dlq");
  const total = dlqs.reduce((sum, q) => sum + (q.messages || 0), 0);
  return h("div", {}, h("p", {}, h("strong", { class: total ? "bad" : "good", id: "dlq-total" }, `${t("count")}: ${total}`)),
    h("ul", { class: "list" }, dlqs.filter((q) => q.messages).map((q) => h("li", { "data-queue": q.name },
      `${q.name}: ${q.messages}`))), total ? h("p", { class: "muted" }, t("on_server"), " ", h("code", {}, "huisheng ops dlq show QUEUE")) : null);
}

function outboxTable(report) {
  if (report.error) return unavailable(report.error, "huisheng ops outbox");
  return h("div", {}, h("p", {}, h("strong", { class: report.healthy ? "good" : "bad", id: "outbox-verdict" },
    report.healthy ? t("healthy") : t("lagging", { s: report.max_lag_seconds }))),
  h("table", { id: "outboxes" }, h("thead", {}, h("tr", {}, ["service", "collection", "events", "lag"]
    .map((k) => h("th", { scope: "col" }, t(`o_${k}`))))),
  h("tbody", {}, report.outboxes.map((row) => h("tr", { "data-service": row.service, class: row.lagging ? "problem" : null },
    h("td", {}, row.service), h("td", {}, row.collection || "—"), h("td", {}, row.events),
    h("td", { class: row.lagging ? "bad" : null }, t("seconds", { n: Math.round(row.lag_seconds * 10) / 10 })))))));
}

async function status(path) {
  const answer = await fetch(path, { headers: { Accept: "application/json" } });
  return { code: answer.status, body: await answer.json() };
}

export async function opsPage() {
  let asked = null; // the three panels share one look at the broker and the databases
  const overview = () => (asked = asked || get("/api/v1/ops/overview"));
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
    panel("ops-dlq", t("dead_letters"), overview, (r) => deadLetters(r.queues)),
    panel("ops-queues", t("queues"), overview, (r) => queuesTable(r.queues), true),
    panel("ops-outbox", t("outbox_lag"), overview, (r) => outboxTable(r.outbox), true),
  ]);
  return h("div", {}, h("h1", {}, t("ops_title")), h("div", { class: "reports" }, panels),
    h("p", {}, h("button", { type: "button", class: "secondary", id: "ops-refresh",
      onclick: () => window.dispatchEvent(new HashChangeEvent("hashchange")) }, t("refresh"))));
}

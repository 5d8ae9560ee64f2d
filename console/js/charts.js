// Small charts drawn as inline SVG (no library, no build step, nothing from the internet): horizontal bars for a
// breakdown, lines for a trend. Every chart is an image with a title for screen readers AND a data table beside
// it (in a <details>), so the numbers are there for anyone who cannot read a picture. Colours come from
// style.css classes (the console's CSP allows no inline style); values are shares between 0 and 1.
import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const SERIES = 3; // style.css has .series-0 … .series-2

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  for (const child of children.flat()) if (child) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

const pct = (value) => (value === null || value === undefined ? "—" : `${Math.round(value * 1000) / 10}%`);

/** A table of the same numbers as the chart: rows × columns of shares. */
function table(caption, columns, rows) {
  return h("details", { class: "chart-data" }, h("summary", {}, caption),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map(([label, values]) => h("tr", {}, h("th", { scope: "row" }, label),
        values.map((v) => h("td", {}, typeof v === "number" || v === null ? pct(v) : v)))))));
}

/**
 * Horizontal bars, one group per item, one bar per series: ``items`` = [{label, values: [share|null, …]}],
 * ``series`` = the names of the values. A missing share (nothing counted) is drawn as "—", not as 0.
 */
export function bars(id, title, series, items, tableCaption) {
  const row = 16, gap = 10, labelWidth = 120, width = 560, plot = width - labelWidth - 60;
  const groupHeight = series.length * row + gap;
  const height = Math.max(1, items.length) * groupHeight + 24;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": `${id}-t`,
    class: "chart", id, preserveAspectRatio: "xMinYMin meet" }, svg("title", { id: `${id}-t` }, title));
  for (const tick of [0, 0.5, 1]) {
    const x = labelWidth + tick * plot;
    chart.append(svg("line", { x1: x, x2: x, y1: 0, y2: height - 20, class: "grid-line" }),
      svg("text", { x, y: height - 6, class: "tick", "text-anchor": "middle" }, pct(tick)));
  }
  items.forEach((item, index) => {
    const top = index * groupHeight;
    chart.append(svg("text", { x: labelWidth - 6, y: top + (series.length * row) / 2 + 4, class: "label",
      "text-anchor": "end" }, item.label.length > 9 ? `${item.label.slice(0, 9)}…` : item.label));
    item.values.forEach((value, s) => {
      const y = top + s * row;
      chart.append(svg("rect", { x: labelWidth, y: y + 2, height: row - 4, width: Math.max(0, (value ?? 0) * plot),
        class: `bar series-${s % SERIES}` }),
      svg("text", { x: labelWidth + (value ?? 0) * plot + 4, y: y + row - 4, class: "value" }, pct(value)));
    });
  });
  return h("figure", { class: "chart-box" }, chart, legend(series),
    table(tableCaption, series, items.map((item) => [item.label, item.values])));
}

/** Lines over time: ``labels`` along the bottom, ``series`` = [{name, values: [share|null, …]}]; gaps stay gaps. */
export function lines(id, title, labels, series, tableCaption) {
  const width = 560, height = 220, left = 48, right = 12, top = 10, bottom = 40;
  const plotW = width - left - right, plotH = height - top - bottom;
  const x = (i) => left + (labels.length <= 1 ? plotW / 2 : (i * plotW) / (labels.length - 1));
  const y = (v) => top + (1 - v) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": `${id}-t`,
    class: "chart", id, preserveAspectRatio: "xMinYMin meet" }, svg("title", { id: `${id}-t` }, title));
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid-line" }),
      svg("text", { x: left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, pct(tick)));
  }
  labels.forEach((label, i) => chart.append(svg("text", { x: x(i), y: height - bottom + 16, class: "tick",
    "text-anchor": "middle" }, label)));
  series.forEach((line, s) => {
    let path = "", pen = false; // the pen lifts over a week with nothing counted
    line.values.forEach((value, i) => {
      if (value === null || value === undefined) { pen = false; return; }
      path += `${pen ? " L" : " M"} ${x(i).toFixed(1)} ${y(value).toFixed(1)}`;
      pen = true;
      chart.append(svg("circle", { cx: x(i), cy: y(value), r: 3.5, class: `dot series-${s % SERIES}` }));
    });
    if (path.trim()) chart.append(svg("path", { d: path.trim(), class: `line series-${s % SERIES}` }));
  });
  return h("figure", { class: "chart-box" }, chart, legend(series.map((line) => line.name)),
    table(tableCaption, labels, series.map((line) => [line.name, line.values])));
}

function legend(names) {
  return h("figcaption", { class: "legend" }, names.map((name, s) => h("span", { class: "key" },
    svg("svg", { viewBox: "0 0 10 10", width: 12, height: 12, "aria-hidden": "true" },
      svg("rect", { width: 10, height: 10, class: `bar series-${s % SERIES}` })), ` ${name}`)));
}

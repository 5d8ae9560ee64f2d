// A tiny element builder: text always goes in as text (never as HTML), so nothing a resident typed can run.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A labelled form field: a <label for> and its control, with an id the tests and screen readers both use. */
export function field(label, control, hint) {
  const hintId = hint ? `${control.id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

export function select(id, options, { required = false, value = "", placeholder } = {}) {
  const control = h("select", { id, name: id, required });
  if (placeholder) control.append(h("option", { value: "" }, placeholder));
  for (const [optionValue, label] of options) {
    const option = h("option", { value: optionValue }, label);
    if (optionValue === value) option.selected = true;
    control.append(option);
  }
  return control;
}

/** Radio buttons in a fieldset with a legend (accessible as one group). */
export function radios(name, legend, options, required = false) {
  return h("fieldset", { class: "radios" }, h("legend", {}, legend),
    options.map(([value, label], index) => h("label", { class: "radio" },
      h("input", { type: "radio", name, value, id: `${name}-${value}`, required: required && index === 0 }), label)));
}

export function clear(element) { element.replaceChildren(); return element; }

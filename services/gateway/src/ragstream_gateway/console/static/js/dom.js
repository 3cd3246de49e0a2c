// Building DOM from elements and text nodes, never from markup strings: every server value lands in text nodes, so none of it can run as markup.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

export const byId = (id) => document.getElementById(id);

export function formatTime(value) {
  return value ? new Date(value).toLocaleString() : "—";
}

// A table from rows and [header, cell(row)] columns; cell may return a string or a node.
export function table(caption, columns, rows) {
  const head = el("tr", {}, columns.map(([name]) => el("th", { scope: "col" }, name)));
  const body = rows.map((row) => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(row) ?? ""))));
  return el("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": caption },
    el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body)));
}

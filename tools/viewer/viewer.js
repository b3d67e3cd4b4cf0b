// The relaxation viewer's script (tools/viewer/viewer.html). It holds no
// relaxation rule: one ReLU's regions come from the engine's rule code
// compiled to WebAssembly (relu_rules_wasm.cpp, embedded as base64), the
// section 4.1 curves from the data certify viewer computed and embedded. This
// file only reads those numbers, draws them and prints them.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = {
  box: "#1f77b4", hbox: "#ff7f0e", "hbox-fresh": "#bcbd22", deepz: "#2ca02c", crown: "#d62728",
  crown0: "#9467bd", "crown0-unstable": "#7f7f7f", "crown-ibp": "#e377c2", triangle: "#8c564b", parallelogram: "#17becf",
};
const LABELS = {
  box: "Box", hbox: "hBox", "hbox-fresh": "hBox (fresh)", deepz: "DeepZ", crown: "CROWN", crown0: "CROWN-0",
  "crown0-unstable": "CROWN-0 (unstable only)",
  "crown-ibp": "CROWN-IBP", triangle: "Triangle", parallelogram: "Parallelogram",
};
const CASES = ["dead (u \u2264 0): y = 0", "stable (l \u2265 0): y = x", "unstable (l < 0 < u)"];
const colour = (name) => COLOURS[name] || "#555";
const label = (name) => LABELS[name] || name;

// A number for people: 4 significant digits, no "-0".
function fmt(v) {
  if (Object.is(v, -0) || Math.abs(v) < 1e-12) return "0";
  return String(Number(v.toPrecision(4)));
}

function el(tag, attrs = {}, parent = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}

// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 times a power of 10.
function ticks(lo, hi, count) {
  const raw = (hi - lo) / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) out.push(Math.abs(t) < 1e-12 ? 0 : t);
  return out;
}

// Axes, grid and labels on an svg; returns the data-to-pixel maps and the layer to draw in.
function frame(svg, box) {
  svg.replaceChildren();
  const width = svg.viewBox.baseVal.width, height = svg.viewBox.baseVal.height;
  const left = 48, right = box.right || 12, top = box.title ? 26 : 10, bottom = 38;
  const X = (x) => left + ((x - box.xmin) / (box.xmax - box.xmin)) * (width - left - right);
  const Y = (y) => height - bottom - ((y - box.ymin) / (box.ymax - box.ymin)) * (height - top - bottom);
  for (const t of ticks(box.xmin, box.xmax, 8)) {
    el("svg:line", { x1: X(t), x2: X(t), y1: Y(box.ymin), y2: Y(box.ymax), class: "grid" }, svg);
    el("svg:text", { x: X(t), y: height - bottom + 14, "text-anchor": "middle", class: "tick", text: fmt(t) }, svg);
  }
  for (const t of ticks(box.ymin, box.ymax, 7)) {
    el("svg:line", { x1: X(box.xmin), x2: X(box.xmax), y1: Y(t), y2: Y(t), class: "grid" }, svg);
    el("svg:text", { x: left - 6, y: Y(t) + 4, "text-anchor": "end", class: "tick", text: fmt(t) }, svg);
  }
  if (box.xmin <= 0 && box.xmax >= 0) el("svg:line", { x1: X(0), x2: X(0), y1: Y(box.ymin), y2: Y(box.ymax), class: "axis" }, svg);
  if (box.ymin <= 0 && box.ymax >= 0) el("svg:line", { x1: X(box.xmin), x2: X(box.xmax), y1: Y(0), y2: Y(0), class: "axis" }, svg);
  el("svg:rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, fill: "none", stroke: "#999" }, svg);
  el("svg:text", { x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle", class: "label", text: box.xlabel }, svg);
  el("svg:text", { x: 12, y: (top + height - bottom) / 2, "text-anchor": "middle", class: "label",
                   transform: `rotate(-90 12 ${(top + height - bottom) / 2})`, text: box.ylabel }, svg);
  if (box.title) el("svg:text", { x: left, y: 17, class: "title", text: box.title }, svg);
  const clipId = svg.id + "-clip";
  const clip = el("svg:clipPath", { id: clipId }, el("svg:defs", {}, svg));
  el("svg:rect", { x: left, y: top, width: width - left - right, height: height - top - bottom }, clip);
  return { X, Y, layer: el("svg:g", { "clip-path": `url(#${clipId})` }, svg) };
}

// A legend box in a corner of the plot ("top-right", "bottom-right",
// "top-left", or "outside": in a right margin left free by frame's box.right):
// one coloured line and name per entry.
function legend(svg, entries, corner = "top-right") {
  const width = svg.viewBox.baseVal.width, height = svg.viewBox.baseVal.height, rowHeight = 16, boxWidth = 130;
  const boxHeight = rowHeight * entries.length + 8;
  const x = corner.endsWith("left") ? 56 : corner === "outside" ? width - boxWidth - 6 : width - boxWidth - 20;
  const y = corner.startsWith("top") ? 34 : height - 46 - boxHeight;
  const g = el("svg:g", { transform: `translate(${x} ${y})` }, svg);
  el("svg:rect", { x: 0, y: 0, width: boxWidth, height: boxHeight, fill: "#fff",
                   "fill-opacity": 0.85, stroke: "#ccc" }, g);
  entries.forEach(([text, stroke], i) => {
    const y = 12 + rowHeight * i;
    el("svg:line", { x1: 8, x2: 28, y1: y, y2: y, stroke, "stroke-width": 3 }, g);
    el("svg:text", { x: 34, y: y + 4, class: "label", text }, g);
  });
}

// ------------------------------------------------------------------ the rule module
function wasmBytes() {
  const text = atob(document.getElementById("rules-wasm").textContent.trim());
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; ++i) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// The layout of relu_region's result is documented in relu_rules_wasm.cpp.
function makeRules(instance) {
  const api = instance.exports;
  const cString = (pointer) => {
    const memory = new Uint8Array(api.memory.buffer);
    let end = pointer;
    while (memory[end] !== 0) ++end;
    return new TextDecoder().decode(memory.subarray(pointer, end));
  };
  const names = [];
  for (let r = 0; r < api.relaxation_total(); ++r) names.push(cString(api.relaxation_label(r)));
  const region = (r, l, u) => {
    const at = api.relu_region(r, l, u);
    const v = new Float64Array(api.memory.buffer, at, 15);
    const lowerCount = v[1], upperCount = v[2], vertexCount = v[14];
    const lines = Array.from(new Float64Array(api.memory.buffer, at + 3 * 8, 2 * (lowerCount + upperCount)));
    const pairs = [];
    for (let k = 0; k < lines.length; k += 2) pairs.push([lines[k], lines[k + 1]]);
    const xy = new Float64Array(api.memory.buffer, at + 15 * 8, 2 * vertexCount);
    const vertices = [];
    for (let k = 0; k < xy.length; k += 2) vertices.push([xy[k], xy[k + 1]]);
    return { reluCase: v[0], lower: pairs.slice(0, lowerCount), upper: pairs.slice(lowerCount), area: v[11],
             ymin: v[12], ymax: v[13], vertices };
  };
  return { names, region };
}

// ------------------------------------------------------------------ one ReLU
const NEURON_VIEW = { xmin: -3.2, xmax: 3.2, ymin: -3.2, ymax: 3.2, xlabel: "x (pre-activation)", ylabel: "y" };

function lineText(side, [slope, intercept]) {
  const relation = side === "lower" ? "\u2265" : "\u2264";
  let rhs;
  if (Math.abs(slope) < 1e-12) rhs = fmt(intercept);
  else {
    rhs = (slope === 1 ? "" : fmt(slope) + " ") + "x";
    if (Math.abs(intercept) >= 1e-12) rhs += (intercept < 0 ? " \u2212 " : " + ") + fmt(Math.abs(intercept));
  }
  return `y ${relation} ${rhs}`;
}

function setupNeuron(rules) {
  const lInput = document.getElementById("l"), uInput = document.getElementById("u");
  const tbody = document.querySelector("#neuron-table tbody");
  const shown = {};
  const rows = rules.names.map((name) => {
    shown[name] = true;
    const tr = el("tr", { "data-relaxation": name }, tbody);
    const box = el("input", { type: "checkbox", checked: "" }, el("td", {}, tr));
    box.addEventListener("change", () => { shown[name] = box.checked; draw(); });
    const nameCell = el("td", {}, tr);
    el("span", { class: "swatch", style: `background:${colour(name)}` }, nameCell);
    nameCell.append(label(name));
    return { tr, area: el("td", { class: "num area" }, tr), range: el("td", { class: "num range" }, tr),
             lines: el("td", { class: "lines" }, tr) };
  });

  function draw() {
    // Keep l < u: the slider moved last pushes the other one.
    let l = Number(lInput.value), u = Number(uInput.value);
    const step = Number(lInput.step);
    if (l >= u) {
      if (document.activeElement === uInput) l = Math.max(Number(lInput.min), u - step);
      else u = Math.min(Number(uInput.max), l + step);
      if (l >= u) u = l + step;
      lInput.value = l;
      uInput.value = u;
      l = Number(lInput.value);
      u = Number(uInput.value);
    }
    document.getElementById("l-value").textContent = fmt(l);
    document.getElementById("u-value").textContent = fmt(u);
    const svg = document.getElementById("neuron-plot");
    svg.dataset.l = l;
    svg.dataset.u = u;
    const { X, Y, layer } = frame(svg, NEURON_VIEW);
    for (const bound of [l, u])
      el("svg:line", { x1: X(bound), x2: X(bound), y1: Y(NEURON_VIEW.ymin), y2: Y(NEURON_VIEW.ymax),
                       stroke: "#777", "stroke-dasharray": "4 3" }, layer);
    el("svg:text", { x: X(l) - 4, y: Y(NEURON_VIEW.ymax) + 14, "text-anchor": "end", class: "label", text: "l" }, layer);
    el("svg:text", { x: X(u) + 4, y: Y(NEURON_VIEW.ymax) + 14, class: "label", text: "u" }, layer);
    const regions = rules.names.map((name, r) => ({ name, r, ...rules.region(r, l, u) }));
    document.getElementById("relu-case").textContent = CASES[regions[0].reluCase];
    // Largest first, so that the tighter regions stay visible on top; a region
    // equal to one drawn before it gets a dashed outline, so both colours show.
    const drawn = [];
    for (const g of [...regions].sort((a, b) => b.area - a.area)) {
      if (!shown[g.name]) continue;
      const points = g.vertices.map(([x, y]) => `${X(x)},${Y(y)}`).join(" ");
      const repeats = drawn.filter((p) => p === points).length;
      drawn.push(points);
      el(g.area > 0 ? "svg:polygon" : "svg:polyline",
         { points, fill: g.area > 0 ? colour(g.name) : "none", "fill-opacity": repeats ? 0 : 0.13, stroke: colour(g.name),
           "stroke-width": g.area > 0 ? 2.5 : 5, "stroke-linejoin": "round", "data-relaxation": g.name,
           ...(repeats ? { "stroke-dasharray": "8 8", "stroke-dashoffset": 8 * repeats } : {}) }, layer);
    }
    el("svg:polyline", { points: `${X(NEURON_VIEW.xmin)},${Y(0)} ${X(0)},${Y(0)} ${X(NEURON_VIEW.ymax)},${Y(NEURON_VIEW.ymax)}`,
                         fill: "none", stroke: "#000", "stroke-width": 1.5 }, layer);
    for (const g of regions) {
      const row = rows[g.r];
      row.tr.dataset.area = g.area;
      row.tr.dataset.ymin = g.ymin;
      row.tr.dataset.ymax = g.ymax;
      row.tr.dataset.lower = JSON.stringify(g.lower);
      row.tr.dataset.upper = JSON.stringify(g.upper);
      row.tr.style.opacity = shown[g.name] ? 1 : 0.45;
      row.area.textContent = fmt(g.area);
      row.range.textContent = `[${fmt(g.ymin)}, ${fmt(g.ymax)}]`;
      row.lines.textContent = [...g.lower.map((p) => lineText("lower", p)), ...g.upper.map((p) => lineText("upper", p))].join(", ");
    }
  }
  lInput.addEventListener("input", draw);
  uInput.addEventListener("input", draw);
  draw();
  return draw;
}

// ------------------------------------------------------------------ the section 4.1 network
// A curve as polyline segments, split where neighbouring values jump (more
// than 10 grid steps: this network's bounds move at most about 2 per unit of w).
function drawCurve(layer, X, Y, xs, ys, stroke, jump, width) {
  let run = [];
  const flush = () => {
    if (run.length > 1)
      el("svg:polyline", { points: run.join(" "), fill: "none", stroke, "stroke-width": width, "stroke-linejoin": "round" }, layer);
    run = [];
  };
  for (let k = 0; k < xs.length; ++k) {
    if (k > 0 && Math.abs(ys[k] - ys[k - 1]) > jump) {
      flush();
      el("svg:line", { x1: X(xs[k - 1]), y1: Y(ys[k - 1]), x2: X(xs[k]), y2: Y(ys[k]), stroke,
                       "stroke-width": 2, "stroke-dasharray": "2 4" }, layer);
    }
    run.push(`${X(xs[k])},${Y(ys[k])}`);
  }
  flush();
}

function setupToy(data) {
  const input = document.getElementById("w");
  input.max = data.w.length - 1;
  input.value = data.w.findIndex((w) => w >= 0.5 - 1e-9);
  const tbody = document.querySelector("#toy-table tbody");
  const shown = {};
  const rows = data.relaxations.map((rel) => {
    shown[rel.name] = ["box", "hbox", "deepz", "crown"].includes(rel.name);
    const tr = el("tr", { "data-relaxation": rel.name }, tbody);
    const box = el("input", { type: "checkbox" }, el("td", {}, tr));
    box.checked = shown[rel.name];
    box.addEventListener("change", () => { shown[rel.name] = box.checked; draw(); });
    const nameCell = el("td", {}, tr);
    el("span", { class: "swatch", style: `background:${colour(rel.name)}` }, nameCell);
    nameCell.append(label(rel.name));
    return { tr, cells: [el("td", { class: "num out0" }, tr), el("td", { class: "num out1" }, tr)] };
  });
  const all = data.relaxations.flatMap((rel) => rel.lower.flat());
  const lo = Math.min(...all), hi = Math.max(...all), pad = 0.08 * (hi - lo || 1);
  const jump = 10 * (data.w[1] - data.w[0]);
  const titles = ["lower bound of x\u2083,\u2081 = x\u2082,\u2082 + 1", "lower bound of x\u2083,\u2082 = x\u2082,\u2082 \u2212 x\u2082,\u2081"];

  function draw() {
    const k = Number(input.value), w = data.w[k];
    document.getElementById("w-value").textContent = fmt(w);
    input.dataset.w = w;
    for (let o = 0; o < 2; ++o) {
      const svg = document.getElementById(`toy-plot-${o}`);
      const { X, Y, layer } = frame(svg, { xmin: data.w[0], xmax: data.w[data.w.length - 1], ymin: lo - pad,
                                           ymax: hi + pad, xlabel: "w", ylabel: "lower bound", title: titles[o] });
      el("svg:line", { x1: X(w), x2: X(w), y1: Y(lo - pad), y2: Y(hi + pad), stroke: "#444", "stroke-dasharray": "5 3" }, layer);
      // Earlier curves wider, so that a curve lying on another one shows as its border.
      const visible = data.relaxations.filter((rel) => shown[rel.name]);
      const step = visible.length > 1 ? Math.min(1.6, 5 / (visible.length - 1)) : 0;
      visible.forEach((rel, i) => {
        const width = 2 + step * (visible.length - 1 - i);
        drawCurve(layer, X, Y, data.w, rel.lower[o], colour(rel.name), jump, width);
        el("svg:circle", { cx: X(w), cy: Y(rel.lower[o][k]), r: 4, fill: colour(rel.name), stroke: "#fff" }, layer);
      });
      legend(svg, visible.map((rel) => [label(rel.name), colour(rel.name)]), o === 0 ? "bottom-right" : "top-left");
    }
    data.relaxations.forEach((rel, r) => {
      const row = rows[r];
      row.tr.style.opacity = shown[rel.name] ? 1 : 0.45;
      for (let o = 0; o < 2; ++o) {
        row.tr.dataset[`lower${o}`] = rel.lower[o][k];
        row.cells[o].textContent = fmt(rel.lower[o][k]);
      }
    });
  }
  input.addEventListener("input", draw);
  draw();
}

// ------------------------------------------------------------------ CSV files
function parseCsv(text) {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (lines.length < 2) throw new Error("needs a header and at least one row");
  const header = lines[0].split(",").map((s) => s.trim());
  const rows = lines.slice(1).map((line, i) => {
    const cells = line.split(",").map(Number);
    if (cells.length !== header.length) throw new Error(`row ${i + 2} has ${cells.length} cells, the header ${header.length}`);
    return cells;
  });
  return { header, column: (j) => rows.map((row) => row[j]) };
}

// Series to plot: sgd_path.csv pairs delta_R with bound_R; the other files plot columns 2.. against column 1.
function csvSeries(csv) {
  const { header } = csv;
  const paths = header.filter((h) => h.startsWith("bound_")).map((h) => h.slice(6));
  if (header[0] === "step" && paths.length && paths.every((name) => header.includes("delta_" + name)))
    return { xlabel: "delta", ylabel: "bound along the ascent", markers: true,
             series: paths.map((name) => ({ name, x: csv.column(header.indexOf("delta_" + name)),
                                            y: csv.column(header.indexOf("bound_" + name)) })) };
  const ylabel = header[0] === "eps" ? "certified accuracy (%)" : "lower bound";
  return { xlabel: header[0], ylabel, markers: false,
           series: header.slice(1).map((name, j) => ({ name, x: csv.column(0), y: csv.column(j + 1) })) };
}

function plotCsv(fileName, text) {
  const info = document.getElementById("csv-info"), svg = document.getElementById("csv-plot");
  let plot;
  try {
    plot = csvSeries(parseCsv(text));
  } catch (e) {
    info.textContent = `${fileName}: ${e.message}`;
    svg.replaceChildren();
    svg.dataset.series = 0;
    return;
  }
  const xs = plot.series.flatMap((s) => s.x).filter(Number.isFinite);
  const ys = plot.series.flatMap((s) => s.y).filter(Number.isFinite);
  const span = (v) => { const lo = Math.min(...v), hi = Math.max(...v), pad = 0.05 * (hi - lo || 1); return [lo - pad, hi + pad]; };
  const [xmin, xmax] = span(xs), [ymin, ymax] = span(ys);
  const { X, Y, layer } = frame(svg, { xmin, xmax, ymin, ymax, xlabel: plot.xlabel, ylabel: plot.ylabel, title: fileName,
                                       right: 150 });
  const palette = Object.values(COLOURS);
  plot.series.forEach((s, i) => {
    const stroke = COLOURS[s.name] || palette[i % palette.length];
    const points = s.x.map((x, k) => `${X(x)},${Y(s.y[k])}`).join(" ");
    el("svg:polyline", { points, fill: "none", stroke, "stroke-width": 2, "data-series": s.name }, layer);
    if (plot.markers) s.x.forEach((x, k) => el("svg:circle", { cx: X(x), cy: Y(s.y[k]), r: 3, fill: stroke }, layer));
  });
  legend(svg, plot.series.map((s, i) => [label(s.name), COLOURS[s.name] || palette[i % palette.length]]), "outside");
  svg.dataset.series = plot.series.length;
  svg.dataset.points = plot.series.length ? plot.series[0].x.length : 0;
  info.textContent = `${fileName}: ${plot.series.length} series of ${svg.dataset.points} points (${plot.series.map((s) => s.name).join(", ")})`;
}

function setupCsv() {
  document.getElementById("csv-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) file.text().then((text) => plotCsv(file.name, text));
  });
}

// ------------------------------------------------------------------ start
WebAssembly.instantiate(wasmBytes(), {})
  .then(({ instance }) => {
    setupNeuron(makeRules(instance));
    setupToy(JSON.parse(document.getElementById("toy-data").textContent));
    setupCsv();
    const status = document.getElementById("status");
    status.textContent = "rule module loaded";
    status.className = "status ok";
    document.body.dataset.ready = "1";
  })
  .catch((e) => {
    document.getElementById("status").textContent = "could not start: " + e;
    document.body.dataset.ready = "error";
  });

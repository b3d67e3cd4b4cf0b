// The relaxation viewer in a real browser (Debian's headless Chromium driven
// by puppeteer-core): loads the page `certify viewer` wrote from disk, moves
// its sliders, reads the numbers it shows and compares them with
// `certify bounds` on the equivalent networks (1e-6), and with the paper's
// hand-derived values; toggles a region; plots CSVs through the file picker;
// takes screenshots. Run by tests/cli/viewer_browser.sh:
//   node viewer_test.mjs PAGE.html CERTIFY SHOT_DIR SGD_DIR
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [pagePath, certify, shotDir, sgdDir] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const TOL = 1e-6;
let failures = 0, checks = 0;
const ok = (msg) => console.log(`ok   ${msg}`);
function check(cond, msg) {
  ++checks;
  if (cond) return true;
  console.log(`FAIL ${msg}`);
  ++failures;
  return false;
}
const close = (a, b) => Math.abs(a - b) <= TOL * Math.max(1, Math.abs(b));

const work = fs.mkdtempSync(path.join(os.tmpdir(), "viewer-test-"));
// `certify bounds` on NET (network JSON) at x = X (a vector), eps = EPS, no clipping, the fast bounds (the
// page shows the exact rule; the sound ones are wider by float rounding): {lower, upper} of every output.
function bounds(net, x, eps, relaxation) {
  const netPath = path.join(work, "net.json"), xPath = path.join(work, "x.json");
  fs.writeFileSync(netPath, JSON.stringify(net));
  fs.writeFileSync(xPath, JSON.stringify({ x: [x] }));
  const out = execFileSync(certify, ["bounds", "--net", netPath, "--x", xPath, "--eps", String(eps), "--relaxation",
                                     relaxation, "--no-clip", "--unsound-fast", "--device", "cpu",
                                     "--alpha-patience", "0"],  // every step, as the page (tools/lib/viewer.cpp)
                           { env: { ...process.env, OMP_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "ignore"] });
  const result = JSON.parse(out.toString());
  return { lower: result.lower[0], upper: result.upper[0] };
}

// A network of independent blocks, one per item (block(i, item) gives its
// first layer's rows and biases and its output rows and biases over the
// block's own two hidden neurons), so that one certify run bounds them all.
function blockNetwork(items, block) {
  const n = items.length, W1 = [], b1 = [], W2 = [], b2 = [];
  items.forEach((item, i) => {
    const { scale, bias1, rows2, bias2 } = block(item);
    for (let j = 0; j < 2; ++j) {
      W1.push(Array.from({ length: n }, (_, c) => (c === i ? scale : 0)));
      b1.push(bias1[j]);
    }
    rows2.forEach((row, r) => {
      const full = new Array(2 * n).fill(0);
      full[2 * i] = row[0];
      full[2 * i + 1] = row[1];
      W2.push(full);
      b2.push(bias2[r]);
    });
  });
  return { input_shape: [n], layers: [{ type: "linear", W: W1, b: b1 }, { type: "relu" }, { type: "linear", W: W2, b: b2 }] };
}

// One ReLU with x in [l, u] per block, read out by backsubstitution: the input
// x0 is in 0.5 +- 1, h1 = a x0 + c in [l, u], h2 = h1 + K (K > -l: always the
// identity), y = relu(h1). The outputs y + 2 (h1 - l) and y - 2 (h1 - u) have
// the lower line's value at l and at u as lower bounds; y - 2 (h1 - l) and
// y + 2 (h1 - u) the upper line's at l and u as upper bounds (every slope of a
// ReLU relaxation is in [0, 1]); the fifth output is y itself.
const NEURON_OUTPUTS = 5;
const neuronBlocks = (pairs) => blockNetwork(pairs, ([l, u]) => {
  const a = (u - l) / 2, c = l + 0.5 * a, K = 1 + Math.abs(l);
  return { scale: a, bias1: [c, c + K], rows2: [[1, 2], [1, -2], [1, -2], [1, 2], [1, 0]],
           bias2: [-2 * (K + l), 2 * (K + u), 2 * (K + l), -2 * (K + u), 0] };
});

// The section 4.1 network, one block per w: x1 = (x0 + w, x0 + w), x2 = relu(x1), x3 = (x22 + 1, x22 - x21).
const toyBlocks = (ws) => blockNetwork(ws, (w) => ({ scale: 1, bias1: [w, w], rows2: [[0, 1], [-1, 1]], bias2: [1, 0] }));

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  userDataDir: path.join(work, "profile"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900, deviceScaleFactor: 1 });
  const problems = [], requests = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("request", (r) => requests.push(r.url()));
  await page.goto("file://" + path.resolve(pagePath));
  await page.waitForSelector("body[data-ready]", { timeout: 20000 });
  const ready = await page.$eval("body", (b) => b.dataset.ready);
  if (!check(ready === "1", `the page starts (status: ${await page.$eval("#status", (s) => s.textContent)})`)) throw new Error("page did not start");
  ok("the page starts from file:// and loads its rule module");

  // ---------------------------------------------------------------- one ReLU
  const setLU = (l, u) => page.evaluate((l, u) => {
    const a = document.getElementById("l"), b = document.getElementById("u");
    a.value = l; b.value = u;
    a.dispatchEvent(new Event("input"));
  }, l, u);
  const readNeuron = () => page.$$eval("#neuron-table tbody tr", (rows) => rows.map((tr) => ({
    name: tr.dataset.relaxation, area: Number(tr.dataset.area), ymin: Number(tr.dataset.ymin), ymax: Number(tr.dataset.ymax),
    lower: JSON.parse(tr.dataset.lower), upper: JSON.parse(tr.dataset.upper),
    areaText: tr.querySelector(".area").textContent, lines: tr.querySelector(".lines").textContent })));

  const pairs = [[-1, 2], [-2, 1], [-1, 1], [-0.75, 0.5], [-1.5, 0.25], [0.25, 1.5], [-1.5, -0.25], [0, 1], [-1, 0],
                 [-2.984375, 3]];
  const pageRows = [];
  for (const [l, u] of pairs) {
    await setLU(l, u);
    const shown = await page.$eval("#neuron-plot", (s) => [Number(s.dataset.l), Number(s.dataset.u)]);
    check(shown[0] === l && shown[1] === u, `sliders at l = ${l}, u = ${u} (page: ${shown})`);
    const rows = await readNeuron();
    check(rows.length === 7, `7 relaxations in the table at (${l}, ${u})`);
    pageRows.push(rows);
  }
  let neuronChecks = 0;
  for (const name of pageRows[0].map((row) => row.name)) {
    const b = bounds(neuronBlocks(pairs), pairs.map(() => 0.5), 1, name);
    pairs.forEach(([l, u], i) => {
      const row = pageRows[i].find((r) => r.name === name);
      const at = (lines, x, pick) => pick(...lines.map(([s, c]) => s * x + c));
      const got = [at(row.lower, l, Math.max), at(row.lower, u, Math.max), at(row.upper, l, Math.min),
                   at(row.upper, u, Math.min), row.ymin, row.ymax];
      const o = NEURON_OUTPUTS * i;
      const want = [b.lower[o], b.lower[o + 1], b.upper[o + 2], b.upper[o + 3], b.lower[o + 4], b.upper[o + 4]];
      check(got.every((g, k) => close(g, want[k])),
            `${name} at (l, u) = (${l}, ${u}): lines at l and u and y range ${got} vs certify bounds ${want}`);
      // The area: trapezoids from certify's line values; Triangle and Parallelogram by hand
      // (unstable: -l u / 2 and -l u; stable: 0 - their regions are the line y = x or y = 0).
      let area;
      if (name === "triangle" || name === "parallelogram") area = l < 0 && u > 0 ? (name === "triangle" ? -l * u / 2 : -l * u) : 0;
      else area = (u - l) * ((want[2] + want[3]) - (want[0] + want[1])) / 2;
      check(close(row.area, area), `${name} at (${l}, ${u}): area ${row.area}, expected ${area}`);
      check(row.areaText !== "" && row.lines.includes("y"), `${name}: area and lines are printed (${row.areaText}; ${row.lines})`);
      neuronChecks += 2;
    });
  }
  ok(`one ReLU: ${neuronChecks} comparisons with certify bounds over ${pairs.length} (l, u) pairs, 7 relaxations`);

  // CROWN's switch at -l = u and hBox's at l = 0, as printed.
  const crownAt = async (l, u) => { await setLU(l, u); return (await readNeuron()).find((r) => r.name === "crown"); };
  check((await crownAt(-1, 1)).lower[0][0] === 0 && (await crownAt(-1, 1.015625)).lower[0][0] === 1,
        "CROWN's lower slope jumps from 0 to 1 as u passes -l");
  const hboxAt = async (l, u) => { await setLU(l, u); return (await readNeuron()).find((r) => r.name === "hbox"); };
  check((await hboxAt(-0.015625, 2)).area > 3.9 && (await hboxAt(0, 2)).area === 0, "hBox's area drops to 0 at l = 0");
  // l >= u is not allowed: the page keeps l below u.
  await setLU(1, 0.5);
  const kept = await page.$eval("#neuron-plot", (s) => [Number(s.dataset.l), Number(s.dataset.u)]);
  check(kept[0] < kept[1], `l >= u requested: the page keeps l < u (${kept})`);
  // Toggling a relaxation hides and shows its region.
  await setLU(-1, 2);
  const boxShapes = () => page.$$eval('#neuron-plot [data-relaxation="box"]', (s) => s.length);
  const toggleBox = () => page.click('#neuron-table tr[data-relaxation="box"] input');
  check((await boxShapes()) === 1, "Box's region is drawn");
  await toggleBox();
  check((await boxShapes()) === 0, "unticking Box removes its region");
  await toggleBox();
  check((await boxShapes()) === 1, "ticking Box draws it again");
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await (await page.$("#neuron")).screenshot({ path: path.join(shotDir, "viewer_relu.png") });
  await setLU(-2, 1);
  await (await page.$("#neuron")).screenshot({ path: path.join(shotDir, "viewer_relu_crown_switched.png") });

  // ---------------------------------------------------------------- the section 4.1 network
  const ws = await page.evaluate(() => JSON.parse(document.getElementById("toy-data").textContent).w);
  const indexOf = (w) => ws.findIndex((v) => Math.abs(v - w) < 1e-9);
  const wanted = [-1, -0.5, -0.005, 0, 0.005, 0.5, 0.995, 1, 1.5, 2].map(indexOf);
  check(wanted.every((k) => k >= 0), `every probed w is on the page's grid (${ws.length} values)`);
  const toyRows = [], toyW = [];
  for (const k of wanted) {
    await page.evaluate((k) => { const s = document.getElementById("w"); s.value = k; s.dispatchEvent(new Event("input")); }, k);
    const w = await page.$eval("#w", (s) => Number(s.dataset.w));
    check(w === ws[k], `w slider at index ${k} shows w = ${w}`);
    const rows = await page.$$eval("#toy-table tbody tr", (rows) => rows.map((tr) => ({
      name: tr.dataset.relaxation, lower: [Number(tr.dataset.lower0), Number(tr.dataset.lower1)] })));
    check(rows.length === 13, "13 relaxations in the network table");
    toyRows.push(rows);
    toyW.push(w);
    // The paper's section 4.1 values: CROWN l31 = 1 for w <= 0, w for 0 < w <= 1; hBox l32 = -1 - w for w < 1, 0 from w = 1.
    const get = (name) => rows.find((r) => r.name === name).lower;
    if (w >= -1 && w <= 1) check(Math.abs(get("crown")[0] - (w <= 0 ? 1 : w)) < 1e-5, `CROWN l31 at w = ${w} is ${get("crown")[0]}`);
    if (w > -1) check(Math.abs(get("hbox")[1] - (w < 1 ? -1 - w : 0)) < 1e-5, `hBox l32 at w = ${w} is ${get("hbox")[1]}`);
  }
  let toyChecks = 0;
  for (const name of toyRows[0].map((row) => row.name)) {
    const b = bounds(toyBlocks(toyW), toyW.map(() => 0), 1, name);
    toyW.forEach((w, i) => {
      const got = toyRows[i].find((r) => r.name === name).lower, want = [b.lower[2 * i], b.lower[2 * i + 1]];
      check(close(got[0], want[0]) && close(got[1], want[1]), `${name} at w = ${w}: page ${got}, certify bounds ${want}`);
      ++toyChecks;
    });
  }
  ok(`section 4.1 network: ${toyChecks} comparisons with certify bounds at ${wanted.length} values of w`);
  await page.evaluate((k) => { const s = document.getElementById("w"); s.value = k; s.dispatchEvent(new Event("input")); }, indexOf(0.5));
  await (await page.$("#toy")).screenshot({ path: path.join(shotDir, "viewer_section_4_1.png") });

  // ---------------------------------------------------------------- CSV files
  const crCsv = path.join(work, "cr_curve.csv");
  fs.writeFileSync(crCsv, "eps,box,crown\n0,90,90\n0.01,80,85\n0.02,60,70\n0.03,30,50\n");
  const files = [[crCsv, 2, 4], [path.join(sgdDir, "sgd_landscape.csv"), 2, 21], [path.join(sgdDir, "sgd_path.csv"), 2, 6]];
  for (const [file, series, points] of files) {
    const input = await page.$("#csv-file");
    await input.uploadFile(file);
    await page.waitForFunction((name) => document.getElementById("csv-info").textContent.startsWith(name),
                               { timeout: 5000 }, path.basename(file));
    const got = await page.$eval("#csv-plot", (s) => [Number(s.dataset.series), Number(s.dataset.points),
                                                       s.querySelectorAll("polyline").length]);
    check(got[0] === series && got[1] === points && got[2] === series,
          `${path.basename(file)}: ${got[0]} series of ${got[1]} points drawn (wanted ${series} of ${points})`);
  }
  await (await page.$("#csv")).screenshot({ path: path.join(shotDir, "viewer_csv.png") });
  await page.screenshot({ path: path.join(shotDir, "viewer_page.png"), fullPage: true });
  ok("the file picker plots cr_curve.csv, sgd_landscape.csv and sgd_path.csv");

  check(problems.length === 0, `no console errors or warnings: ${problems.join(" | ")}`);
  const remote = requests.filter((u) => !u.startsWith("file:") && !u.startsWith("data:"));
  check(remote.length === 0, `no network requests: ${remote.join(", ")}`);
} finally {
  await browser.close();
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`[viewer_test] ${checks} checks, ${failures} failure(s); screenshots in ${shotDir}`);
process.exit(failures ? 1 : 0);

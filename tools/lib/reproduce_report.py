"""Assembles results/report.md and results/report.html from results/cells/*.json.

Only measured numbers appear in the "ours" columns, each from a cell JSON that
records its command; the paper's numbers come from the recipe and appear only
in columns labelled "paper". A cell that has not run is shown as "-", never
filled in.
"""

import html
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

RELAXATION_TITLES = {"box": "Box", "hbox": "hBox", "crown-ibp": "CROWN-IBP", "deepz": "DeepZ", "crown": "CROWN",
                     "crown0": "CROWN-0", "triangle": "Triangle", "parallelogram": "Parallelogram",
                     "triangle-lp": "Triangle (LP)", "parallelogram-lp": "Parallelogram (LP)"}


def load_results(paths, cells):
    out = {}
    for cid in cells:
        p = paths.result_json(cid)
        if p.exists():
            out[cid] = json.loads(p.read_text())
    return out


def pct(x, digits=1):
    return "-" if x is None else f"{100.0 * x:.{digits}f}"


def num(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def margin(x):
    """A certified margin: two significant digits, small ones included."""
    return "-" if x is None else f"{x:.2g}"


class Doc:
    """The same report as Markdown and as HTML, built side by side."""

    def __init__(self, link_prefix=""):
        self.md, self.html = [], []
        self.link_prefix = link_prefix  # before figures/...: "results/" when the Markdown lives in the repository root

    def heading(self, level, text):
        self.md.append("#" * level + " " + text + "\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text):
        self.md.append(text + "\n")
        self.html.append(f"<p>{html.escape(text)}</p>")

    def bullets(self, items):
        self.md.append("\n".join(f"- {i}" for i in items) + "\n")
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def table(self, header, rows, caption=None):
        if caption:
            self.md.append(f"*{caption}*\n")
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            self.md.append("| " + " | ".join(str(c) for c in r) + " |")
        self.md.append("")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.html.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, stem, caption, figures_dir):
        png, svg = figures_dir / f"{stem}.png", figures_dir / f"{stem}.svg"
        if not png.exists():
            self.para(f"({caption}: not run yet)")
            return
        fig = f"{self.link_prefix}figures"
        self.md.append(f"![{caption}]({fig}/{png.name})\n\n*{caption}* ([SVG]({fig}/{svg.name}))\n")
        src = f"figures/{svg.name}" if svg.exists() else f"figures/{png.name}"
        self.html.append(f'<figure><img src="{src}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def details(self, summary, lines):
        self.md.append(f"<details><summary>{summary}</summary>\n\n```\n" + "\n".join(lines) + "\n```\n</details>\n")
        self.html.append(f"<details><summary>{html.escape(summary)}</summary><pre>" +
                         html.escape("\n".join(lines)) + "</pre></details>")


def train_numbers(r):
    """(accuracy, PGD accuracy, certified accuracy) of a train cell at its eps_test, as fractions."""
    ev = r["evaluation"]
    at = ev["radii"][0]
    certified = at.get("certified", {})
    cert = next(iter(certified.values())) if certified else None
    return ev.get("accuracy"), at.get("pgd_accuracy"), cert


def paper_rows(recipe):
    t = recipe.get("paper_results")
    if not t:
        return {}
    return {(r[0], r[1], round(r[2], 3)): r[3:] for r in t["rows"]}


def hours(seconds):
    return "-" if seconds is None else f"{seconds / 3600.0:.2f}"


def bar_figure(figures, stem, title, labels, series, ylabel):
    """A grouped bar chart (gnuplot histogram) as PNG and SVG; series: [(name, [value or None per label])]."""
    data = figures / f"{stem}.dat"
    with open(data, "w") as f:
        f.write("label " + " ".join(f'"{n}"' for n, _ in series) + "\n")
        for i, lab in enumerate(labels):
            vals = ["NaN" if s[i] is None else f"{s[i]:.3f}" for _, s in series]
            f.write(f'"{lab}" ' + " ".join(vals) + "\n")
    # Ours in colour, the paper's in grey: the reader sees at once which bars were measured here.
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    plot = ", ".join(f"'{data.name}' using {i + 2}:xtic(1) title columnheader({i + 2}) linecolor rgb "
                     f"'{'#9e9e9e' if name == 'paper' else colours[i % len(colours)]}'"
                     for i, (name, _) in enumerate(series))
    for term, ext in (("pngcairo size 1000,560 font ',11'", "png"), ("svg size 1000,560 dynamic font 'sans,11'", "svg")):
        script = (f"set terminal {term}\nset output '{stem}.{ext}'\nset title '{title}' noenhanced\n"
                  f"set ylabel '{ylabel}' noenhanced\nset style data histogram\n"
                  "set style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
                  "set key top right noenhanced\nset grid ytics\nset yrange [0:*]\nset xtics noenhanced\n"
                  f"plot {plot}\n")
        subprocess.run(["gnuplot"], input=script, text=True, cwd=figures, check=True, capture_output=True)


def paradox_methods(recipe):
    """The paper's rows (tables 10/11): the methods with a table-6 row of their own (SABR borrows Box's;
    Triangle and Parallelogram, table6 = false, have none)."""
    return [m for m, spec in recipe["methods"].items() if "row" not in spec and spec.get("table6", True)]


def paradox_section(doc, recipe, cells, results, figures, net, table_name, eps_list, with_figures=True):
    paper = paper_rows(recipe)
    methods = paradox_methods(recipe)
    schedules = [s for s in recipe["schedules"]
                 if any(c["kind"] == "train" and c.get("paper_method") and c["schedule"] == s and c["net"] == net
                        and cid in results for cid, c in cells.items())]
    for eps in eps_list:
        header = ["method"]
        for s in schedules:
            ep = recipe["schedules"][s]["epochs"]
            header += [f"acc, ours {ep} ep", f"PGD, ours {ep} ep", f"certified, ours {ep} ep"]
        header += ["acc, the paper's (200 ep)", "PGD, the paper's", "certified, the paper's"]
        rows = []
        for m in methods:
            row = [m]
            for s in schedules:
                r = find_train(cells, results, net, m, eps, s, seed=0)
                a, p, c = train_numbers(r) if r else (None, None, None)
                row += [pct(a), pct(p), pct(c)]
            pr = paper.get((net, m, round(eps, 3)))
            row += [num(pr[0]), num(pr[1]), num(pr[2])] if pr else ["-"] * 3
            rows.append(row)
        doc.table(header, rows, f"{table_name}, FashionMNIST {net.upper()}, eps_test {eps:g}: accuracy, PGD accuracy "
                  "and certified accuracy (%), ours per schedule (see the schedules above) and the paper's (200 epochs)")
        ordering_check(doc, recipe, cells, results, net, eps, schedules, paper)
        labels = methods
        series = []
        for s in schedules:
            vals = []
            for m in methods:
                r = find_train(cells, results, net, m, eps, s, seed=0)
                vals.append(100.0 * train_numbers(r)[2] if r and train_numbers(r)[2] is not None else None)
            if any(v is not None for v in vals):
                series.append((f"ours, {s}", vals))
        series.append(("paper", [paper[(net, m, round(eps, 3))][2] if (net, m, round(eps, 3)) in paper else None
                                 for m in methods]))
        stem = f"paradox_{net}_eps{eps:g}"
        if not with_figures:
            continue
        if len(series) > 1:
            bar_figure(figures, stem, f"Certified accuracy, FashionMNIST {net.upper()}, eps {eps:g}", labels, series,
                       "certified accuracy (%)")
        doc.figure(stem, f"Certified accuracy per training relaxation, FashionMNIST {net.upper()}, eps_test {eps:g} "
                   "(ours per schedule, and the paper's)", figures)


def find_train(cells, results, net, paper_method, eps, schedule, seed):
    for cid, c in cells.items():
        if (c["kind"] == "train" and c.get("paper_method") == paper_method and c["net"] == net
                and abs(c.get("eps_test", -1) - eps) < 1e-9 and c["schedule"] == schedule and c["seed"] == seed):
            return results.get(cid)
    return None


def ordering_check(doc, recipe, cells, results, net, eps, schedules, paper):
    """States the certified-accuracy order of the relaxations (CROWN-IBP, the hybrid, aside) ours vs the paper's."""
    relaxation_rows = [m for m in paradox_methods(recipe) if m != "CROWN-IBP"]
    pr = [(m, paper[(net, m, round(eps, 3))][2]) for m in relaxation_rows if (net, m, round(eps, 3)) in paper]
    lines = []
    if pr:
        lines.append("the paper's: " + " > ".join(f"{m} {v:.1f}" for m, v in sorted(pr, key=lambda t: -t[1])))
    seeds = recipe.get("paper_seeds", {}).get(net)  # table 13: Box seeds mean/sd for this network
    for s in schedules:
        # Every row measured on this schedule, CROWN-IBP (the complete defense) included; the order
        # line leaves it aside, the comparison with the paper's numbers does not.
        measured = [(m, 100.0 * train_numbers(r)[2]) for m in paradox_methods(recipe)
                    if (r := find_train(cells, results, net, m, eps, s, seed=0)) and train_numbers(r)[2] is not None]
        ours = [(m, v) for m, v in measured if m in relaxation_rows]
        if not ours:
            continue
        text = f"ours (schedule {s}): " + " > ".join(f"{m} {v:.1f}" for m, v in sorted(ours, key=lambda t: -t[1]))
        if len(ours) < len(relaxation_rows):
            missing = [m for m in relaxation_rows if m not in dict(ours)]
            text += f" (not run yet on this schedule: {', '.join(missing)})"
        lines.append(text)
        if s == "paper" and seeds:
            close = []
            for m, v in measured:
                p = paper.get((net, m, round(eps, 3)))
                if p:
                    close.append(f"{m} {v - p[2]:+.1f} ({'within' if abs(v - p[2]) <= 2 * seeds['sd'] else 'outside'} "
                                 f"2 sd = {2 * seeds['sd']:.2f})")
            lines.append("ours (schedule paper) minus the paper's, certified: " + "; ".join(close) +
                         " (sd: table 13's Box seed sd for this network)")
    if lines:
        doc.bullets(lines)


def seeds_section(doc, recipe, cells, results):
    for net, p in recipe.get("paper_seeds", {}).items():
        got = []
        for cid, c in cells.items():
            if (c["kind"] == "train" and c["net"] == net and c.get("paper_method") == "Box"
                    and abs(c.get("eps_test", -1) - 0.3) < 1e-9 and c["schedule"] == "paper" and cid in results):
                cert = train_numbers(results[cid])[2]
                if cert is not None:
                    got.append((c["seed"], 100.0 * cert))
        rows = []
        if got:
            vals = [v for _, v in sorted(got)]
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            rows.append(["ours (seeds " + ", ".join(str(s) for s, _ in sorted(got)) + ")",
                         " ".join(f"{v:.1f}" for v in vals), f"{statistics.mean(vals):.2f}",
                         "-" if math.isnan(sd) else f"{sd:.2f}"])
        rows.append(["paper (seeds 10-19)", " ".join(f"{v:g}" for v in p["seeds"]), f"{p['mean']:.2f}", f"{p['sd']:.2f}"])
        doc.table(["", "certified accuracy per seed (%)", "mean", "sd"], rows,
                  f"Table 13: Box, FashionMNIST {net.upper()}, eps_test 0.3, paper's schedule (sd: sample, n-1)")


def cross_section(doc, recipe, cells, results):
    """Table 7: one table per cross-certify experiment (the SABR comparison's has its own section)."""
    shown = False
    for e in recipe["experiment"]:
        if e.get("kind") != "cross-certify" or e.get("of") in ("sabr", "table14") or e["id"] in BOUNDS_MODE_EXPERIMENTS:
            continue  # in their own sections
        ours = [(cid, c) for cid, c in cells.items()
                if c["kind"] == "cross-certify" and e["id"] in c["experiments"] and cid in results]
        if not ours:
            continue
        shown = True
        relax = e["relaxations"]
        rows = []
        for cid, c in ours:
            t = cells[c["needs"][0]]
            at = results[cid]["evaluation"]["radii"][0]
            rows.append([f"{t.get('paper_method', t['flags']['method'])} ({t['schedule']})", f"{c['eps']:g}",
                         pct(results[cid]["evaluation"]["accuracy"])] +
                        [pct(at["certified"].get(r)) for r in relax])
        doc.table(["trained with", "eps", "accuracy"] + [f"certified: {RELAXATION_TITLES.get(r, r)}" for r in relax],
                  rows, "Table 7: each trained CONV net certified with every relaxation (%, sound bounds)")
        if "box" in relax and "hbox" in relax:
            hbox_below_box_note(doc, cells, results, ours)
        paper = recipe.get("paper_table7")
        if paper:  # the paper's rows of the methods we ran, for the pattern (MNIST, not FashionMNIST)
            ran = {(cells[c["needs"][0]].get("paper_method", cells[c["needs"][0]]["flags"]["method"]), c["eps"])
                   for _, c in ours}
            columns = paper["columns"]
            picked = [[row[0], f"{row[1]:g}"] + [f"{row[columns.index(r)]:g}" if r in columns else "" for r in relax]
                      for row in paper["rows"] if (row[0], row[1]) in ran]
            if picked:
                doc.table(["trained with", "eps"] + [f"paper (MNIST): {RELAXATION_TITLES.get(r, r)}" for r in relax],
                          picked, "Table 7 as the paper reports it, on MNIST (not a FashionMNIST measurement): "
                                  "the same rows, for the pattern")
    if not shown:
        doc.para("(Table 7: not run yet)")


BOUNDS_MODE_EXPERIMENTS = ("sound-bounds", "fast-bounds")


def bounds_mode_section(doc, recipe, cells, results):
    """What sound certification costs: experiments sound-bounds and fast-bounds certify the same nets with one
    binary, with and without float32 rounding accounted for; one row per net and relaxation."""
    exps = {e["id"]: e for e in recipe["experiment"] if e["id"] in BOUNDS_MODE_EXPERIMENTS}
    if len(exps) < 2:
        return
    sound_e, fast_e = exps["sound-bounds"], exps["fast-bounds"]
    doc.para(f"{sound_e['about']}, and {fast_e['about'][0].lower()}{fast_e['about'][1:]}: the fast bounds are what "
             "certified-training code usually reports (the paper's numbers included); every other certified "
             "accuracy in this report is sound. An image certified only by the fast bounds has a margin within the "
             "worst-case float32 error of 0. Cells measured before commit " + SOUND_BOX_FIX + " (most training "
             "cells' final certification among them) used a looser sound Box and hBox (3 gammas per affine box step "
             "instead of 2), and before commit " + SOUND_SLACK_FIXES[-1] + " a looser sound hBox (its generator "
             "norms' roundings bounded over whole activations and input centres, not their symbolic parts): their sound numbers sit "
             "up to a few tenths of a point below what today's binary gives on the same net, as the commit column "
             "of each cell's JSON tells.")
    rows = []
    for cid, c in cells.items():
        if c["kind"] != "cross-certify" or sound_e["id"] not in c["experiments"]:
            continue
        tid = c["needs"][0]
        t = cells[tid]
        sound, fast = results.get(cid), results.get(f"{fast_e['id']}/{tid}")
        for r in sound_e["relaxations"]:
            def at(res, key):
                return res["evaluation"]["radii"][0][key].get(r) if res else None
            s_cert, f_cert = at(sound, "certified"), at(fast, "certified")
            diff = "-" if s_cert is None or f_cert is None else f"{100.0 * (f_cert - s_cert):+.2f}"
            rows.append([f"{t.get('paper_method', t['flags']['method'])} ({t['schedule']})", f"{c['eps']:g}",
                         RELAXATION_TITLES.get(r, r), pct(s_cert, 2), pct(f_cert, 2), diff,
                         margin(at(sound, "smallest_certified_margin")), margin(at(fast, "smallest_certified_margin"))])
    doc.table(["trained with", "eps", "certified with", "certified, sound", "certified, fast", "fast - sound (points)",
               "smallest certified margin, sound", "smallest certified margin, fast"], rows,
              "What sound certification costs: certified accuracy (%) with sound and with fast float32 bounds, "
              "same binary, whole test set")


# The commits that tightened sound hBox: 94d8993 (no ReLU slack on its symbolic rows, which cross
# a ReLU exactly), 0ed3c08 (its generator-norm walker no longer counts the float32 pass's own
# error, which its box part holds), 52b7937 (2 gammas per affine box step instead of 3, for Box
# too: SOUND_BOX_FIX), c785e2f (the walker's residuals over the symbolic parts G e alone, not
# the whole activations) and HBOX_INPUT_FIX (its input step's slack over r0, without |c0|).
# Cells measured before the last one understate today's sound hBox.
HBOX_INPUT_FIX = "851d220"
SOUND_SLACK_FIXES = ("94d8993", "0ed3c08", "52b7937", "c785e2f", HBOX_INPUT_FIX)
SOUND_BOX_FIX = SOUND_SLACK_FIXES[2]


def measured_before(commit, fix):
    """True or False when git can tell whether a cell's commit predates `fix`, else None."""
    commit = (commit or "").removesuffix("-dirty")
    try:
        r = subprocess.run(["git", "merge-base", "--is-ancestor", fix, commit], cwd=Path(__file__).resolve().parent,
                           capture_output=True)
    except OSError:
        return None
    return {0: False, 1: True}.get(r.returncode)


def hbox_below_box_note(doc, cells, results, ours):
    """hBox's interval lies inside Box's (appendix C), so with exact arithmetic it certifies every image Box
    does; a row where it certifies fewer owes that to sound mode's float32 slack, which the note says."""
    items = []
    for cid, c in ours:
        at = results[cid]["evaluation"]["radii"][0]["certified"]
        if at.get("hbox") is None or at.get("box") is None or at["hbox"] >= at["box"]:
            continue
        t = cells[c["needs"][0]]
        before = measured_before(results[cid].get("commit"), SOUND_SLACK_FIXES[-1])
        when = {True: f"measured before commit {SOUND_SLACK_FIXES[-1]}: today's sound hBox is tighter",
                False: "measured with today's sound hBox", None: "commit not comparable here"}[before]
        items.append(f"{t.get('paper_method', t['flags']['method'])} ({t['schedule']}), eps {c['eps']:g}: hBox "
                     f"{100 * at['hbox']:.2f} < Box {100 * at['box']:.2f} ({when})")
    if items:
        doc.para("hBox's interval lies inside Box's at every layer (appendix C): with exact arithmetic it certifies "
                 "every image Box does. Below Box, the difference is sound mode's float32 slack, which hBox pays on "
                 "its box part and on its generator norms. Commits " + ", ".join(SOUND_SLACK_FIXES) + " removed "
                 "slack that sound hBox paid twice or needlessly (a ReLU slack on its symbolic rows, which cross a "
                 "ReLU exactly; the float32 pass's own error, which its box part already holds; a third gamma per "
                 "affine box step, for Box too; the generator norms' roundings bounded over whole activations and "
                 "input centres instead of their symbolic parts), so rows measured before them understate today's sound hBox and "
                 "Box. The next section compares Box and hBox, sound and fast, on the paper-schedule nets with one "
                 "binary. Rows where hBox certifies less than Box:")
        doc.bullets(items)


def sabr_section(doc, recipe, cells, results):
    """SABR vs Box vs CROWN-IBP (experiments `sabr` and `sabr-certify`): per eps, each method's accuracy, PGD
    accuracy and certified accuracy under every relaxation of sabr-certify, then SABR's claim checked."""
    exp = next((e for e in recipe["experiment"] if e["id"] == "sabr"), None)
    cert_exp = next((e for e in recipe["experiment"] if e.get("kind") == "cross-certify" and e.get("of") == "sabr"), None)
    if exp is None:
        return
    relax = cert_exp["relaxations"] if cert_exp else []
    schedule = exp["schedule"]
    epochs = recipe["schedules"][schedule]["epochs"]
    doc.para(exp["about"] + ". " + (cert_exp["about"] + " (sound bounds; 'best': an image counts when any "
                                    "of them certifies it)." if cert_exp else ""))
    for eps in exp["eps_test"]:
        rows, numbers = [], {}
        for m in exp["methods"]:
            tid = next((cid for cid, c in cells.items() if c["kind"] == "train" and c.get("paper_method") == m
                        and c["net"] == exp["net"] and abs(c.get("eps_test", -1) - eps) < 1e-9
                        and c["schedule"] == schedule and c["seed"] == 0), None)
            r = results.get(tid) if tid else None
            a, p, _ = train_numbers(r) if r else (None, None, None)
            cr = results.get(f"{cert_exp['id']}/{tid}") if cert_exp and tid else None
            # Until sabr-certify has run on a net, the columns its training cell's own (sound,
            # full test set) evaluation has: the Box column for all three methods.
            own = r["evaluation"]["radii"][0]["certified"] if r and r.get("evaluation") else {}
            at = cr["evaluation"]["radii"][0]["certified"] if cr else own
            rows.append([m, pct(a), pct(p)] + [pct(at.get(x)) for x in relax])
            numbers[m] = (a, at.get("best", at.get("box")))
        doc.table(["method", "accuracy", "PGD accuracy"] + [f"certified: {RELAXATION_TITLES.get(x, x)}" for x in relax],
                  rows, f"SABR vs Box vs CROWN-IBP, FashionMNIST {exp['net'].upper()}, eps_test {eps:g}, "
                  f"{epochs} epochs (%)")
        sabr, box = numbers.get("SABR", (None, None)), numbers.get("Box", (None, None))
        if None in sabr or None in box:
            doc.bullets(["SABR's claim (higher standard and certified accuracy than Box): not measured yet"])
        else:
            holds = sabr[0] > box[0] and sabr[1] > box[1]
            doc.bullets([f"SABR's claim (higher standard and certified accuracy than Box) {'holds' if holds else 'does not hold'} "
                         f"here: accuracy {100 * sabr[0]:.1f} vs {100 * box[0]:.1f}, certified (best) "
                         f"{100 * sabr[1]:.1f} vs {100 * box[1]:.1f}"])


def mean_sd(values):
    """(mean, sample sd or None) of the values that are not None; (None, None) when there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def table14_section(doc, recipe, cells, results):
    """Table 14 (experiment `table14`): each relaxation's nets (one per seed), certified with their own
    relaxation, as the mean over the seeds run, beside the paper's MNIST numbers ([paper_table14]); then the
    paper's claim checked on the means (Triangle and Parallelogram certify more than every other relaxation)
    and, with `table14-certify`, every net under the same relaxations."""
    exp = next((e for e in recipe["experiment"] if e["id"] == "table14"), None)
    if exp is None:
        return
    paper = {r[0]: r[1:] for r in recipe.get("paper_table14", {}).get("rows", [])}
    doc.para(exp["about"] + ". Each net is certified with the relaxation it trained with (sound bounds), on the "
             "whole test set projected on the training images' basis; every number is the mean over the seeds "
             "run (sd: sample sd over the seeds). The paper's columns are its MNIST numbers (one run each), not a "
             "FashionMNIST measurement.")

    def trained(m):  # [(seed, train cell id)] of method m
        return sorted((c["seed"], cid) for cid, c in cells.items()
                      if c["kind"] == "train" and exp["id"] in c["experiments"] and c.get("paper_method") == m)

    rows, ours, schedules = [], {}, set()
    for m in exp["methods"]:
        runs = [(seed, results[cid]) for seed, cid in trained(m) if cid in results]
        schedules.update(cells[cid]["schedule"] for _, cid in trained(m))
        numbers = [train_numbers(r) for _, r in runs]
        a, _ = mean_sd([n[0] for n in numbers])
        p, _ = mean_sd([n[1] for n in numbers])
        cert, sd = mean_sd([n[2] for n in numbers])
        if cert is not None:
            ours[m] = 100.0 * cert
        pa, pc = paper.get(m, (None, None))
        seconds, _ = mean_sd([r.get("train_seconds") for _, r in runs])
        rows.append([m, pct(a), pct(p), pct(cert), pct(sd), ", ".join(str(seed) for seed, _ in runs) or "-",
                     num(pa, 2), num(pc, 2), num(seconds, 0)])
    doc.table(["method", "accuracy", "PGD accuracy", "certified", "certified sd", "seeds", "accuracy (paper, MNIST)",
               "certified (paper, MNIST)", "training (s)"], rows,
              f"Table 14 on FashionMNIST: 2x20 net, 16-D PCA, eps 0.3, schedule {', '.join(sorted(schedules))}, "
              "means over the seeds (%)")
    lines = []
    if paper:
        lines.append("the paper's (MNIST): " + " > ".join(f"{m} {v[1]:.1f}" for m, v in
                                                          sorted(paper.items(), key=lambda t: -t[1][1])))
    if ours:
        lines.append("ours (means): " + " > ".join(f"{m} {v:.1f}" for m, v in sorted(ours.items(), key=lambda t: -t[1]))
                     + (f" ({len(exp['methods']) - len(ours)} of {len(exp['methods'])} rows not run yet)"
                        if len(ours) < len(exp["methods"]) else ""))
    new = [m for m in ("Triangle", "Parallelogram") if m in exp["methods"]]
    old = [m for m in exp["methods"] if m not in new]
    if new and all(m in ours for m in exp["methods"]):
        holds = min(ours[m] for m in new) > max(ours[m] for m in old)
        lines.append(f"the paper's claim (Triangle and Parallelogram certify more than every other relaxation) "
                     f"{'holds' if holds else 'does not hold'} here, on the means")
    else:
        lines.append("the paper's claim (Triangle and Parallelogram certify more than every other relaxation): "
                     "not measured yet")
    doc.bullets(lines)
    cert_exp = next((e for e in recipe["experiment"] if e.get("kind") == "cross-certify" and e.get("of") == exp["id"]),
                    None)
    if cert_exp is None:
        return
    relax = cert_exp["relaxations"]
    rows = []
    for m in exp["methods"]:
        evals = [results[f"{cert_exp['id']}/{cid}"]["evaluation"] for _, cid in trained(m)
                 if f"{cert_exp['id']}/{cid}" in results]
        acc, _ = mean_sd([e["accuracy"] for e in evals])
        rows.append([m, str(len(evals)) if evals else "-", pct(acc)] +
                    [pct(mean_sd([e["radii"][0]["certified"].get(x) for e in evals])[0]) for x in relax])
    doc.table(["trained with", "seeds", "accuracy"] + [f"certified: {RELAXATION_TITLES.get(x, x)}" for x in relax],
              rows, cert_exp["about"] + " (%, means over the seeds, sound bounds; 'best': an image counts when any "
              "of them certifies it)")


def tightness_section(doc, recipe, cells, results, figures, measured_only=False):
    """Table 4's CR-AUC per tightness cell and its CR curves; measured_only (the README) leaves out
    cells that have not run."""
    paper = recipe.get("paper_cr_auc", {})
    for cid, c in cells.items():
        if c["kind"] != "tightness":
            continue
        r = results.get(cid)
        if measured_only and not r:
            continue
        exp = c["experiments"][0]
        # The paper's column: the experiment's letter (tightness-D), or the one it names with its data
        # set ("F (MNIST)": the column is that letter's, the header says the data set differs).
        column = c.get("paper_column", exp.split("-")[-1])
        p = paper.get(column.split(" ")[0], {})
        paper_header = "CR-AUC (paper" + (f", {column}" if "paper_column" in c else "") + ")"
        rows = []
        if r:
            auc = r["cr_auc"]["cr_auc"]
            for name in c["relaxations"]:
                rows.append([RELAXATION_TITLES.get(name, name), f"{auc.get(name, float('nan')):.3f}",
                             f"{p[name]:.2f}" if name in p else "-"])
            order = sorted(auc.items(), key=lambda t: t[1])
            # The accuracy of the net this cell certified, on its own test images: the training
            # cell's JSON describes the latest training of that net, which may be a later one.
            acc = f"{pct(r['cr_auc']['accuracy'])}% on these images" if "accuracy" in r["cr_auc"] else "-"
            doc.table(["relaxation", "CR-AUC (ours)", paper_header], rows,
                      f"Tightness, {exp}: {cells[c['needs'][0]]['id']} (accuracy {acc}), CR-AUC over eps in "
                      f"[0, {c['eps_max']:g}]" + (f", first {c['test_subset']} test images" if "test_subset" in c else "")
                      + (f", {c['points']} radii (the paper: 100)" if c.get("points", 100) != 100 else ""))
            notes = ["ours, loosest to tightest: " + " < ".join(f"{RELAXATION_TITLES.get(n, n)} {v:.3f}"
                                                                for n, v in order)]
            trained = results.get(c["needs"][0])
            recorded = r.get("needs_weights_hash", {}).get(c["needs"][0])
            if trained and (recorded != trained.get("weights_hash") if recorded else
                            trained.get("finished", "") > r.get("finished", "")):
                notes.append(f"computed on an earlier training of {c['needs'][0]} than the one its JSON now records "
                             f"(the recipe ran again, with another binary, finishing {trained.get('finished', '?')[:10]}): "
                             f"the same recipe, not the same weights")
            doc.bullets(notes)
        else:
            doc.para(f"(Tightness {exp}: not run yet)")
        stem = cid.replace("/", "__").replace("@", "_at_")
        doc.figure(stem, f"CR curves, {exp}", figures)


def times_section(doc, cells, results):
    rows = []
    for cid, c in cells.items():
        r = results.get(cid)
        if not r:
            continue
        if c["kind"] == "train":
            rows.append([cid, str(r.get("epochs")), hours(r.get("train_seconds")), num(r.get("eval_seconds"), 0),
                         r["machine"]["cpu"] + f" ({r['machine']['cores']} cores)",
                         r["command"][r["command"].index("--threads") + 1] if "--threads" in r["command"] else "-"])
    if rows:
        doc.table(["cell", "epochs", "training (h)", "evaluation (s)", "machine", "threads"], rows,
                  "Time per training cell (sum of the epochs' seconds across resumes, plus the final evaluation)")


def write(recipe, cells, paths):
    results = load_results(paths, cells)
    figures = paths.figures()
    figures.mkdir(parents=True, exist_ok=True)
    doc = Doc()
    doc.heading(1, f"Reproduction report: {recipe['title']}")
    commits = sorted({r.get("commit", "?") for r in results.values()})
    doc.para(f"Assembled {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by tools/reproduce --report from "
             f"{len(results)} of {len(cells)} cells of {Path(recipe['_path']).name} (results/cells/*.json; "
             f"commits {', '.join(commits) or '-'}). Columns marked 'paper' are the paper's published numbers; "
             "every other number is ours, measured by the cell whose command is listed at the end. "
             "'-' marks a cell that has not run yet.")
    doc.bullets([f"schedule '{n}': {s['about']}" for n, s in recipe["schedules"].items()])

    doc.heading(2, "The paradox: certified training with each relaxation (tables 10 and 11)")
    paradox_section(doc, recipe, cells, results, figures, "conv", "Table 11", [0.3, 0.1])
    paradox_section(doc, recipe, cells, results, figures, "fc", "Table 10", [0.3])
    doc.heading(2, "Seeds (table 13)")
    seeds_section(doc, recipe, cells, results)
    doc.heading(2, "Training with one relaxation, certifying with another (table 7)")
    cross_section(doc, recipe, cells, results)
    doc.heading(2, "Sound and fast bounds: what sound certification costs")
    bounds_mode_section(doc, recipe, cells, results)
    doc.heading(2, "SABR: small boxes against Box and CROWN-IBP (not in the paper)")
    sabr_section(doc, recipe, cells, results)
    doc.heading(2, "Training with Triangle and Parallelogram (table 14)")
    table14_section(doc, recipe, cells, results)
    doc.heading(2, "Tightness (table 4, figure 2)")
    tightness_section(doc, recipe, cells, results, figures)
    doc.heading(2, "Continuity and sensitivity (figures 3 to 6)")
    for cid, c in cells.items():
        if c["kind"] in ("landscape", "sgd", "command"):
            stem = cid.replace("/", "__").replace("@", "_at_")
            exp = next((e for e in recipe["experiment"] if e["id"] == c["experiments"][0]), {})
            doc.figure(stem, f"{c['experiments'][0]}: {exp.get('about', '')}", figures)
    doc.heading(2, "Time per cell")
    times_section(doc, cells, results)
    doc.heading(2, "Provenance: the command of every cell")
    doc.details(f"{len(results)} commands", [f"{cid}: {' '.join(r['command'])}" for cid, r in results.items()])

    out_md = paths.results / "report.md"
    out_md.write_text("\n".join(doc.md) + "\n")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}caption{text-align:left;font-style:italic;"
             "padding:0.3em 0}th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}thead{background:#f0f0f0}"
             "figure{margin:1em 0}img{max-width:100%}pre{white-space:pre-wrap;font-size:0.8em}")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>" + html.escape(recipe["title"]) +
            f"</title><style>{style}</style></head><body>" + "\n".join(doc.html) + "</body></html>\n")
    (paths.results / "report.html").write_text(page)
    print(f"[reproduce] wrote {out_md} and {paths.results / 'report.html'} ({len(results)} cells)")


README_BEGIN, README_END = "<!-- reproduce-status:begin -->", "<!-- reproduce-status:end -->"


def write_readme_status(recipe, cells, paths, readme):
    """Replaces the block between README_BEGIN and README_END of `readme` with what the cells measured so far:
    tables 10/11 (figure of CONV eps 0.3 only), table 13, table 4's measured tightness cells, the SABR
    comparison and the hours per cell."""
    results = load_results(paths, cells)
    figures = paths.figures()
    doc = Doc(link_prefix="results/")
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores)" for r in results.values()
                       if "machine" in r})
    zero_start = sorted(cid for cid, r in results.items()
                        if cells.get(cid, {}).get("kind") == "train" and r["evaluation"].get("pgd_start", "zero") == "zero")
    doc.para(f"Measured so far ({len(results)} of {len(cells)} cells; {', '.join(machines) or 'no machine yet'}; one "
             "thread per cell at nice 19 beside the builds, so the hours are pessimistic). `tools/reproduce --report "
             "--readme README.md` wrote this block from `results/cells/`; the whole report, with every command: "
             "[results/report.md](results/report.md) or [results/report.html](results/report.html).")
    if zero_start:
        doc.para("PGD accuracy of " + ", ".join(zero_start) + ": the attack starts at x itself (binaries older than "
                 "`--pgd-start`; today's default is a random start). The certified accuracy does not depend on it.")
    paradox_section(doc, recipe, cells, results, figures, "conv", "Table 11", [0.3], with_figures=True)
    paradox_section(doc, recipe, cells, results, figures, "conv", "Table 11", [0.1], with_figures=False)
    paradox_section(doc, recipe, cells, results, figures, "fc", "Table 10", [0.3], with_figures=False)
    seeds_section(doc, recipe, cells, results)
    tightness_section(doc, recipe, cells, results, figures, measured_only=True)
    sabr_section(doc, recipe, cells, results)
    times_section(doc, cells, results)
    text = Path(readme).read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        print(f"[reproduce] error: {readme}: no {README_BEGIN} ... {README_END} block to fill", file=sys.stderr)
        sys.exit(2)
    block = README_BEGIN + "\n" + "\n".join(doc.md).rstrip("\n") + "\n" + README_END
    Path(readme).write_text(text[:begin] + block + text[end + len(README_END):])
    print(f"[reproduce] wrote the measured-so-far block of {readme} ({len(results)} cells)")


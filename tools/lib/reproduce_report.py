"""Assembles results/report.md and results/report.html from results/cells/*.json (stub)."""


def write(recipe, cells, paths):
    print("[reproduce] report: not yet")

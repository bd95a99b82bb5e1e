"""The study's report: its tables as Markdown and its chart, from :func:`ecd.study.summarise`'s
:class:`~ecd.study.Study` (each arm's scores over seeds, each comparison's difference with its
interval and minimum detectable effect, and the seeds that would detect what the study did not)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from ecd.study import COLUMNS, Cell, Study


def _column_title(set_name: str, mode: str) -> str:
    return {"heldout": "held-out", "ifeval": "IFEval", "ifbench": "IFBench"}[set_name] + f" {mode}"


def markdown(study: Study) -> str:
    """The study's two tables: each arm's prompt-level score (mean ± sd over seeds), and each
    comparison's difference with its 95 % interval over prompts and seeds and its minimum
    detectable effect (80 % power, 5 % two-sided)."""
    head = "| | " + " | ".join(_column_title(*c) for c in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    lines = ["Prompt level, mean ± sd over seeds (runs):", "", head.replace("| |", "| arm |", 1), rule]
    for arm, cols in study.scores.items():
        cells = []
        for c in COLUMNS:
            vals = cols.get(c, [])
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f} ({len(vals)})" if vals else "")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Differences, 95 % interval over prompts and seeds; mde: the smallest difference the study "
              "detects with 80 % power:", "", head.replace("| |", "| difference |", 1), rule]
    for (a, b), by_column in study.cells.items():
        cells = []
        for c in COLUMNS:
            cell = by_column.get(c)
            cells.append(f"{cell.delta:+.3f} [{cell.lo:+.3f}, {cell.hi:+.3f}] mde {cell.mde:.3f}" if cell else "")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    lines += ["", "Seeds needed to detect the difference seen, where the study did not (80 % power, 5 % two-sided; "
              "the interval narrowing as one over the square root of the seeds):", "",
              head.replace("| |", "| difference |", 1), rule]
    for (a, b), by_column in study.cells.items():
        lines.append(f"| {a} − {b} | " + " | ".join(_needed_text(by_column.get(c)) for c in COLUMNS) + " |")
    sizes = ", ".join(f"{_column_title(s, 'x').removesuffix(' x')} {'/'.join(map(str, n))}" for s, n in study.prompts.items())
    lines += ["", f"Seeds: {', '.join(map(str, study.seeds))}. Prompts per seed: {sizes}."]
    return "\n".join(lines)


def _needed_text(cell: Cell | None) -> str:
    """``detected`` where the interval excludes zero, else the seeds :func:`seeds_needed` gives for
    the difference seen (``none`` for a difference of zero, which no number of seeds detects)."""
    if cell is None:
        return ""
    if cell.lo > 0 or cell.hi < 0:
        return "detected"
    n = seeds_needed(cell, abs(cell.delta))
    return "none" if n is None else f"{n}"


def seeds_needed(cell: Cell, target: float) -> int | None:
    """How many seeds (at this many prompts) the interval of ``cell`` would need to have a minimum
    detectable effect of ``target``, its width shrinking as 1/sqrt(seeds); None without a width."""
    if cell.mde <= 0 or target <= 0:
        return None
    return math.ceil(len(cell.seeds) * (cell.mde / target) ** 2)


def chart(study: Study) -> Any:
    """Every comparison on every set: the difference and its 95 % interval, against a line at zero; each
    comparison is labelled with the seeds it pools, since an interval over fewer seeds is wider."""
    from ecd.charts import Chart

    def label(a: str, b: str, n: int) -> str:
        return f"{a} − {b} ({n} seed{'s' if n != 1 else ''})"

    values = [{"comparison": label(a, b, max(len(x.seeds) for x in cols.values())), "set": _column_title(*c),
               "delta": cell.delta, "lo": cell.lo, "hi": cell.hi, "seeds": len(cell.seeds)}
              for (a, b), cols in study.cells.items() for c, cell in cols.items()]
    y = {"field": "comparison", "type": "nominal", "title": None, "sort": None}
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"{study.profile} study: differences with 95 % intervals over prompts and seeds",
        "data": {"values": values},
        "facet": {"column": {"field": "set", "type": "nominal", "title": None, "sort": [_column_title(*c) for c in COLUMNS]}},
        "spec": {"width": 170, "height": {"step": 22}, "layer": [
            {"mark": {"type": "rule", "strokeWidth": 2}, "encoding": {
                "y": y, "x": {"field": "lo", "type": "quantitative", "title": "prompt level"}, "x2": {"field": "hi"}}},
            {"mark": {"type": "point", "filled": True, "size": 50, "color": "black"}, "encoding": {
                "y": y, "x": {"field": "delta", "type": "quantitative"},
                "tooltip": [{"field": "comparison"}, {"field": "set"}, {"field": "delta", "format": "+.3f"},
                            {"field": "lo", "format": "+.3f"}, {"field": "hi", "format": "+.3f"}, {"field": "seeds"}]}},
            {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "grey"}, "encoding": {"x": {"datum": 0}}},
        ]},
    }
    return Chart(f"{study.profile} study", spec)

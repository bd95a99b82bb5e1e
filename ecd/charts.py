"""Charts that render offline: DVC's own plot definitions as SVG, PNG and one self-contained HTML page.

``dvc plots show`` writes a page that loads Vega, Vega-Lite and vega-embed from a CDN, which draws
nothing on a machine without a network. ``dvc plots show --json`` gives the same charts as Vega-Lite
specs with their data filled in; vl-convert (Vega and Vega-Lite compiled into a native extension)
renders those specs to images and bundles the three libraries into the page, so ``dvc.yaml`` stays
the one place a plot is defined and nothing is fetched at any point.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecd.errors import EcdError
from ecd.records import atomic_path

#: the Vega-Lite major version DVC's templates are written for (their ``$schema``)
_SCHEMA = re.compile(r"vega-lite/v(\d+)")
#: a table cell that is a number, a count like 12/30, a score with its delta like 0.25 (+0.05) or
#: with its interval like 0.25 [0.20, 0.30]
_NUMBER = re.compile(r"^[+-]?[\d.]+(/\d+)?( \([+-]?[\d.]+\))?( \[[+-]?[\d.]+, [+-]?[\d.]+\])?$")


@dataclass(frozen=True)
class Chart:
    """One chart: its title (DVC's plot id) and a Vega-Lite spec with the data inline."""

    title: str
    spec: dict[str, Any]

    @property
    def slug(self) -> str:
        """A file name for the chart: its title in lowercase words joined by dashes."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "chart"


def dvc_charts() -> list[Chart]:
    """The top-level plots of ``dvc.yaml`` as ``dvc plots show`` fills them in for the workspace."""
    cmd = ["dvc", "plots", "show", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EcdError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    try:
        data = json.loads(proc.stdout).get("data") or {}
    except ValueError:
        raise EcdError(f"{' '.join(cmd)} printed no JSON: {proc.stdout[:200]!r}") from None
    charts = []
    for title, entries in data.items():
        for entry in entries:
            content = entry.get("content")
            if entry.get("type") == "vega" and isinstance(content, dict) and (content.get("data") or {}).get("values"):
                charts.append(Chart(title, content))
    return charts


def _vl_version(spec: dict[str, Any]) -> str:
    """The newest Vega-Lite that vl-convert carries within the major version of the spec's schema."""
    import vl_convert as vlc

    match = _SCHEMA.search(str(spec.get("$schema", "")))
    versions = vlc.get_vegalite_versions()
    same_major = [v for v in versions if match and v.split(".")[0] == match.group(1)]
    return (same_major or versions)[-1]


def render(charts: list[Chart], out_dir: Path) -> list[Path]:
    """Each chart as ``<slug>.svg`` and ``<slug>.png`` (twice the spec's size) in ``out_dir``. Data
    from any URL is refused: every chart carries its data inline."""
    import vl_convert as vlc

    written = []
    for chart in charts:
        version = _vl_version(chart.spec)
        svg = vlc.vegalite_to_svg(chart.spec, vl_version=version, allowed_base_urls=[])
        png = vlc.vegalite_to_png(chart.spec, vl_version=version, scale=2.0, allowed_base_urls=[])
        for path, data in ((out_dir / f"{chart.slug}.svg", svg.encode("utf-8")), (out_dir / f"{chart.slug}.png", png)):
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
            written.append(path)
    return written


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no ``</script>`` can end it early)."""
    return json.dumps(value).replace("</", "<\\/")


def html_page(title: str, sections: list[tuple[str, str]], charts: list[Chart]) -> str:
    """One HTML document with no external resource: ``sections`` are (heading, HTML body) pairs
    shown first, then every chart drawn as SVG by the bundled vega-embed."""
    import vl_convert as vlc

    versions = {_vl_version(c.spec) for c in charts} or {vlc.get_vegalite_versions()[-1]}
    if len(versions) > 1:
        raise EcdError(f"charts need different Vega-Lite versions ({', '.join(sorted(versions))}); one page bundles one")
    bundle = vlc.javascript_bundle(vl_version=versions.pop()) if charts else ""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, content in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", content]
    if charts:
        body.append("<h2>Charts</h2>")
    for i, chart in enumerate(charts):
        body.append(f'<figure><figcaption>{html.escape(chart.title)}</figcaption><div class="chart" id="chart-{i}"></div></figure>')
    specs = _script_json([c.spec for c in charts])
    draw = (f"const specs = {specs};\n"
            "specs.forEach((spec, i) => vegaEmbed('#chart-' + i, spec, {renderer: 'svg', actions: false})\n"
            "  .catch(err => { document.getElementById('chart-' + i).textContent = 'chart failed: ' + err; }));")
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}td.num{text-align:right}"
             "figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.5em}")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        f"<style>{style}</style>",
        f"<script>{bundle}</script>" if charts else "",
        "</head><body>", *body, f"<script>{draw}</script>" if charts else "", "</body></html>", ""])


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain HTML table of already formatted cells; numbers align right, text left."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    def cell(c: str) -> str:
        numeric = _NUMBER.match(str(c)) is not None
        return f'<td class="num">{html.escape(str(c))}</td>' if numeric else f"<td>{html.escape(str(c))}</td>"

    body = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def margin_chart(groups: list[Any], metric: str) -> Chart:
    """Each setting's preference-minus-control margin over its seeds with its 95 % interval over
    prompts and seeds (``ecd.seed_runs.SeedGroup``s), against a line at zero: a setting helps where its
    whole bar is right of the line. (Not a DVC plot: it is computed across experiments, which DVC
    plots do not aggregate.)"""
    values = [{"setting": (g.label if len(g.label) <= 60 else g.label[:59] + "…") + f" ({len(g.runs)} runs)",
               "delta": g.margin["delta"], "lo": g.margin["lo"], "hi": g.margin["hi"], "runs": len(g.runs)}
              for g in groups if g.margin]
    y = {"field": "setting", "type": "nominal", "title": None, "sort": None, "axis": {"labelLimit": 420}}
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"Preference − control over seeds, {metric}, with 95 % intervals over prompts and seeds",
        "data": {"values": values}, "width": 520, "height": {"step": 28},
        "layer": [
            {"mark": {"type": "rule", "strokeWidth": 2}, "encoding": {
                "y": y, "x": {"field": "lo", "type": "quantitative", "title": f"preference − control ({metric})"},
                "x2": {"field": "hi"}}},
            {"mark": {"type": "point", "filled": True, "size": 70, "color": "black"}, "encoding": {
                "y": y, "x": {"field": "delta", "type": "quantitative"},
                "tooltip": [{"field": "setting"}, {"field": "delta", "format": "+.3f"}, {"field": "lo", "format": "+.3f"},
                            {"field": "hi", "format": "+.3f"}, {"field": "runs"}]}},
            {"mark": {"type": "rule", "strokeDash": [4, 4], "color": "grey"}, "data": {"values": [{"zero": 0}]},
             "encoding": {"x": {"field": "zero", "type": "quantitative"}}},
        ],
    }
    return Chart(f"Preference minus control over seeds ({metric})", spec)

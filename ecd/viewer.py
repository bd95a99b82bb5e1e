"""The pair and chain viewer: one self-contained HTML page a person reads in a browser.

``ecd inspect --html`` writes it. Pairs show the instruction, each constraint with both sides'
verdicts, and the two answers with their word-level difference marked; a round's chains show how
each instruction grew, round by round, with the words each round added marked and the answer that
met it. Selects filter by strategy, round and constraint type (a few lines of our own script, no
library, nothing fetched).

Everything a model wrote is data: it goes through :func:`html.escape` on its way into the page and
the page carries a Content-Security-Policy that lets only its own inline script run, so an answer
holding ``<script>`` or ``</div>`` shows as those characters and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ecd.diagnosis import word_diff
from ecd.schema import Pair

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:82em;padding:0 1em;color:#222}
header{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
label{margin-right:1.2em}select{margin-left:.3em}
.item{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.6em 1em}
.item h2{font-size:1em;margin:.2em 0 .6em;color:#555}
.prompt,.answer,.instr{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:.88em;
 background:#f7f7f7;padding:.5em;border-radius:4px;margin:.3em 0;overflow-wrap:anywhere}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.chosen h3{color:#17692e}.rejected h3{color:#a11}h3{font-size:.95em;margin:.6em 0 .2em}
ins{background:#c8f0cf;text-decoration:underline}del{background:#f8c9c9;text-decoration:line-through}
table.cons{border-collapse:collapse;font-size:.88em}table.cons td,table.cons th{border:1px solid #ddd;padding:.15em .5em}
td.pass{color:#17692e}td.fail{color:#a11;font-weight:bold}.new{font-size:.8em;color:#555}
.round{border-left:3px solid #88a;padding-left:.8em;margin:.8em 0}.eliminated{color:#a11}
.count{color:#555;margin-left:1em}
"""

#: shows the items whose data attributes match every select (an empty select matches all); the page's
#: query string sets the selects, so that ``pairs.html?strategy=random&type=punctuation:no_comma`` is a link
_SCRIPT = """
const selects = Array.from(document.querySelectorAll('select[data-filter]'));
function apply() {
  let shown = 0;
  const items = document.querySelectorAll('.item');
  items.forEach(el => {
    const ok = selects.every(s => !s.value || (el.dataset[s.dataset.filter] || '').split(' ').includes(s.value));
    el.hidden = !ok;
    if (ok) shown += 1;
  });
  document.getElementById('count').textContent = shown + ' of ' + items.length + ' shown';
}
const query = new URLSearchParams(location.search);
selects.forEach(s => {
  if (query.has(s.dataset.filter)) s.value = query.get(s.dataset.filter);
  s.addEventListener('change', apply);
});
apply();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _diff_html(chosen: str, rejected: str) -> tuple[str, str]:
    """Each side of a word diff as HTML: what only ``chosen`` has inside <ins>, what only ``rejected``
    has inside <del>, every piece escaped."""
    a, b = [], []
    for op, pa, pb in word_diff(chosen, rejected):
        a.append(_e(pa) if op == "equal" or not pa else f"<ins>{_e(pa)}</ins>")
        b.append(_e(pb) if op == "equal" or not pb else f"<del>{_e(pb)}</del>")
    return "".join(a), "".join(b)


def _select(name: str, label: str, values: Iterable[str]) -> str:
    options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(set(values)))
    return f'<label>{_e(label)}<select data-filter="{name}"><option value="">all</option>{options}</select></label>'


def _page(title: str, filters: list[str], items: list[str]) -> str:
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        f"<title>{_e(title)}</title>", f"<style>{_STYLE}</style>", "</head><body>",
        f"<header><h1>{_e(title)}</h1>{''.join(filters)}<span class=\"count\" id=\"count\"></span></header>",
        *items, f"<script>{_SCRIPT}</script>", "</body></html>", ""])


def _constraint_rows(ids: Sequence[str], chosen_pass: Mapping[str, bool], rejected_pass: Mapping[str, bool],
                     new: Sequence[str], sides: tuple[str, str] = ("chosen", "rejected")) -> str:
    rows = [f"<tr><th>constraint</th><th>{_e(sides[0])}</th><th>{_e(sides[1])}</th></tr>"]
    for cid in ids:
        cells = []
        for passed in (chosen_pass.get(cid, True), rejected_pass.get(cid, True)):
            cells.append('<td class="pass">pass</td>' if passed else '<td class="fail">miss</td>')
        tag = ' <span class="new">new</span>' if cid in new else ""
        rows.append(f"<tr><td>{_e(cid)}{tag}</td>{''.join(cells)}</tr>")
    return f'<table class="cons">{"".join(rows)}</table>'


def pairs_page(pairs: Sequence[Pair | Mapping[str, Any]], title: str) -> str:
    """The pairs as one page: per pair the prompt, its constraints with both sides' verdicts (the
    chosen side passes every one: pairing keeps no other), and the answers with their difference."""
    items = []
    for p in pairs:
        missed = set(p["missed_constraints"])
        chosen, rejected = _diff_html(p["chosen"][0]["content"], p["rejected"][0]["content"])
        types = " ".join(_e(c) for c in p["instruction_id_list"])
        items.append(
            f'<section class="item" data-strategy="{_e(p["strategy"])}" data-round="{_e(p["round"])}" data-type="{types}">'
            f'<h2>{_e(p["strategy"])} · round {_e(p["round"])} · difficulty {float(p["difficulty"]):.2f} · {_e(p["id"][:12])}</h2>'
            f'<div class="prompt">{_e(p["prompt"][0]["content"])}</div>'
            + _constraint_rows(p["instruction_id_list"], {}, {c: c not in missed for c in p["instruction_id_list"]},
                               p["new_constraints"])
            + '<div class="sides">'
            f'<div class="chosen"><h3>chosen ({_e(p["chosen_model"])})</h3><div class="answer">{chosen}</div></div>'
            f'<div class="rejected"><h3>rejected ({_e(p["rejected_model"])})</h3><div class="answer">{rejected}</div></div>'
            "</div></section>")
    filters = [_select("strategy", "strategy", (p["strategy"] for p in pairs)),
               _select("round", "round", (str(p["round"]) for p in pairs)),
               _select("type", "constraint type", (c for p in pairs for c in p["instruction_id_list"]))]
    return _page(title, filters, items)


def chain_history(rounds_dir: Path, last: int) -> list[dict[str, Any]]:
    """Each chain of round ``last`` from its seed: ``{"chain", "root", "rounds"}`` where ``root`` is the
    seed's State and ``rounds`` holds, per round 1..``last``, the Chain attempt and, when it was
    accepted, its Step (I(t), R(t), R(t−1) and their verdicts)."""
    from ecd.rounds import Rounds

    rounds = Rounds(rounds_dir)
    roots = {s["root_id"]: s for s in rounds.state("r0")}
    attempts: dict[str, list[dict[str, Any]]] = {}
    for t in range(1, last + 1):
        steps = {s["chain"]: s for s in rounds.steps(f"r{t}")}
        for c in rounds.chains(f"r{t}"):
            attempts.setdefault(c["chain"], []).append({"round": t, "attempt": c, "step": steps.get(c["chain"])})
    last_chains = [c["chain"] for c in rounds.chains(f"r{last}")]
    return [{"chain": name, "root": roots[attempts[name][0]["attempt"]["root_id"]], "rounds": attempts[name]}
            for name in last_chains]


def chains_page(history: Sequence[Mapping[str, Any]], title: str) -> str:
    """The chains as one page: the seed, then each round's instruction with the words it added
    marked, its constraints with the verdicts of its answer and of the chain's answer before
    (R(t−1)), and the verified answer with what it changed marked, or why the round was eliminated."""
    items = []
    for h in history:
        root = h["root"]
        previous = root["instruction"]["text"]
        parts = [f'<h3>seed</h3><div class="instr">{_e(previous)}</div><div class="answer">{_e(root["response"]["text"])}</div>']
        rounds_ok: list[str] = []
        types: set[str] = set()
        for r in h["rounds"]:
            step, attempt = r["step"], r["attempt"]
            if step is None:
                parts.append(f'<div class="round"><h3>round {r["round"]}</h3>'
                             f'<p class="eliminated">eliminated: {_e(attempt["eliminated"] or "no verified answer")}</p></div>')
                continue
            text = step["instruction"]["text"]
            grown, _ = _diff_html(text, previous)
            previous = text
            rounds_ok.append(str(r["round"]))
            types.update(c["id"] for c in step["instruction"]["constraints"])
            ids = [c["id"] for c in step["instruction"]["constraints"]]
            parts.append(
                f'<div class="round"><h3>round {r["round"]}: {_e(step["instruction"]["operation"])}</h3>'
                f'<div class="instr">{grown}</div>'
                + _constraint_rows(ids, {x["id"]: x["passed"] for x in step["chosen_results"]},
                                   {x["id"]: x["passed"] for x in step["rejected_results"]}, step["new_constraints"],
                                   ("this answer", "the answer before"))
                + f'<h3>this answer (what it changed in the answer before marked)</h3>'
                f'<div class="answer">{_diff_html(step["chosen"]["text"], step["rejected"]["text"])[0]}</div></div>')
        items.append(f'<section class="item" data-round="{" ".join(rounds_ok)}" data-type="{_e(" ".join(sorted(types)))}">'
                     f'<h2>{_e(h["chain"])} · {len(rounds_ok)} of {len(h["rounds"])} rounds accepted</h2>{"".join(parts)}</section>')
    filters = [_select("round", "accepted in round", (str(r["round"]) for h in history for r in h["rounds"] if r["step"])),
               _select("type", "constraint type", (c["id"] for h in history for r in h["rounds"] if r["step"]
                                                   for c in r["step"]["instruction"]["constraints"]))]
    return _page(title, filters, items)

"""HTML backend: one self-contained file (styles inline, charts as data URIs) that opens offline and prints well.

Each figure row links to its entry in the evidence appendix; alert ids there link to the API
(``/api/v1/alerts/{id}``), which shows the alert with its evidence events to whoever may see them.
"""

from __future__ import annotations

import base64
import json
from html import escape

from reports.i18n import Texts
from reports.layout import Chart, Document, Heading, Paragraph, Table

STYLE = """
body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:13px;color:#222;max-width:1100px;margin:2em auto;padding:0 1em}
h1{font-size:22px;margin-bottom:.2em}h2{font-size:17px;border-bottom:2px solid #1565c0;padding-bottom:3px;margin-top:2em}
h3{font-size:15px}.subtitle{font-size:16px;color:#1565c0}.meta{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;margin:.6em 0 1em}th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#e3ecf7;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}.note{color:#777;font-style:italic}figure{margin:1em 0}
figcaption{font-size:12px;color:#555}img{max-width:100%}.ev{font-family:"DejaVu Sans Mono",monospace;font-size:11px;
word-break:break-all}.evlink{font-size:11px}dt{font-weight:bold;margin-top:.8em}
"""


def _table(block: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in block.headers)
    rows = []
    for cells, label in zip(block.rows, block.evidence):
        tds = "".join(f'<td class="num">{escape(c)}</td>' if i in block.numeric else f"<td>{escape(c)}</td>"
                      for i, c in enumerate(cells))
        link = f'<a class="evlink" href="#ev-{label}">{label}</a>' if label else ""
        rows.append(f"<tr>{tds}<td>{link}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _chart(block: Chart, t: Texts) -> str:
    data = base64.b64encode(block.png).decode()
    links = " ".join(f'<a class="evlink" href="#ev-{label}">{label}</a>' for label in block.evidence)
    return (f'<figure><img alt="{escape(t("chart_alt"))}: {escape(block.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(block.caption)} {links}</figcaption></figure>")


def _evidence(doc: Document, t: Texts) -> str:
    parts = [f'<h2 id="evidence">{escape(t("evidence_title"))}</h2><p class="note">{escape(t("evidence_intro"))}</p>'
             "<dl>"]
    for entry in doc.evidence:
        ev = entry.evidence
        items = []
        if ev.alerts:
            links = ", ".join(f'<a href="/api/v1/alerts/{escape(a)}">{escape(a)}</a>' for a in ev.alerts)
            items.append(f"<div>{escape(t('evidence_alerts'))} ({len(ev.alerts)}): <span class=ev>{links}</span></div>")
        if ev.events:
            items.append(f"<div>{escape(t('evidence_events'))} ({len(ev.events)}): "
                         f"<span class=ev>{escape(', '.join(ev.events))}</span></div>")
        for collection, ids in sorted(ev.other.items()):
            items.append(f"<div>{escape(t('evidence_other'))} {escape(collection)}: "
                         f"<span class=ev>{escape(', '.join(ids))}</span></div>")
        if ev.query:
            items.append(f"<div>{escape(t('evidence_query'))}: <span class=ev>"
                         f"{escape(json.dumps(ev.query, ensure_ascii=False))}</span></div>")
        if ev.truncated:
            items.append(f'<div class="note">{escape(t("evidence_truncated"))}</div>')
        parts.append(f'<dt id="ev-{entry.label}">{entry.label} - {escape(entry.title)}</dt><dd>{"".join(items)}</dd>')
    parts.append("</dl>")
    return "".join(parts)


def render_html(doc: Document) -> str:
    t = Texts(doc.lang)
    body = [f"<h1>{escape(doc.title)}</h1>", f'<div class="subtitle">{escape(doc.subtitle)}</div>']
    body += [f'<div class="meta">{escape(line)}</div>' for line in doc.meta]
    toc = [f'<li><a href="#{b.anchor}">{escape(b.text)}</a></li>' for b in doc.blocks
           if isinstance(b, Heading) and b.level == 1]
    toc.append(f'<li><a href="#evidence">{escape(t("evidence_title"))}</a></li>')
    body.append(f"<h3>{escape(t('toc'))}</h3><ul>{''.join(toc)}</ul>")
    for block in doc.blocks:
        if isinstance(block, Heading):
            tag = "h2" if block.level == 1 else "h3"
            body.append(f'<{tag} id="{block.anchor}">{escape(block.text)}</{tag}>')
        elif isinstance(block, Paragraph):
            body.append(f'<p class="{"note" if block.style == "note" else "body"}">{escape(block.text)}</p>')
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, Chart):
            body.append(_chart(block, t))
    body.append(_evidence(doc, t))
    return (f'<!DOCTYPE html><html lang="{doc.lang}"><head><meta charset="utf-8"><title>{escape(doc.title)} - '
            f'{escape(doc.subtitle)}</title><style>{STYLE}</style></head><body>{"".join(body)}</body></html>\n')

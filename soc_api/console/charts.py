"""Charts drawn on the server as inline SVG: no third-party code, no script, nothing for the Content Security Policy
to refuse (SVG presentation attributes are not styles). Each chart is a ``<figure>``: a caption, the SVG (``role=img``
named by its ``<title>`` and described by its ``<desc>``: what it shows and its headline figures, for a screen
reader), a legend, and the same numbers as a table under a ``<details>`` (for whoever cannot see the drawing, and to
copy them).

- :func:`stacked_bars`: one bar per category (a day), stacked by series (severities), a total above each bar;
- :func:`line_panels`: one or more series over the same categories, each in a panel of its own with its own scale
  (events and alerts per day differ by orders of magnitude; one shared axis would flatten one of them);
- :func:`format_number` and :func:`compact_number`: numbers the language's way (1.234 / 1,234; 1,2 Tr / 1.2M).

Every value is also in the SVG as a ``data-value`` attribute (with ``data-category`` and ``data-series``): the tests
read the numbers there, and so can a browser's tools. Text is escaped; ids are the caller's (made unique per page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from markupsafe import Markup, escape

WIDTH = 600  # the viewBox (about the size it is drawn at on a 1366-pixel screen); the SVG is as wide as its box
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 24, 40
INK = "#1a1f24"
AXIS = "#4a5560"  # text on white: 7.5:1
GRID = "#d5dadf"  # decorative only
MISSING = "#767f88"  # the marker of an incomplete category: 4.0:1 on white


@dataclass
class Series:
    key: str
    label: str
    values: Sequence[float]
    color: str  # a fill that stands out at 3:1 or more against white (WCAG 1.4.11)
    estimated: Sequence[bool] = field(default_factory=list)  # per value: an estimate, shown "≈" and hollow


def format_number(value: float | int | None, lang: str, decimals: int = 0) -> str:
    """1234567 → "1.234.567" (vi) or "1,234,567" (en); ``decimals`` places after the point."""
    if value is None:
        return ""
    text = f"{value:,.{decimals}f}"
    if lang == "vi":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def compact_number(value: float, lang: str) -> str:
    """An axis label: 950, 12.500, 1,2 Tr / 950, 12,500, 1.2M."""
    if abs(value) >= 1_000_000:
        scaled = value / 1_000_000
        text = format_number(scaled, lang, 0 if scaled == int(scaled) else 1)
        return text + (" Tr" if lang == "vi" else "M")
    return format_number(value, lang, 0 if value == int(value) else 1)


def nice_ceiling(value: float, ticks: int = 4) -> tuple[float, float]:
    """A round top for an axis that holds ``value`` and its step (1, 2 or 5 times a power of ten), ``ticks`` steps."""
    if value <= 0:
        return float(ticks), 1.0
    raw = value / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * power
        if step * ticks >= value:
            break
    if step < 1:
        step = 1.0
    return step * ticks, step


def _attr(value: object) -> str:
    return str(escape(str(value)))


def _num(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _y_axis(parts: list[str], top: float, height: float, maximum: float, step: float, lang: str) -> None:
    ticks = int(round(maximum / step))
    for i in range(ticks + 1):
        value = step * i
        y = top + height - height * value / maximum
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}" stroke="{GRID}" '
                     f'stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_num(y + 4)}" text-anchor="end" font-size="12" fill="{AXIS}">'
                     f'{_attr(compact_number(value, lang))}</text>')


def _x_labels(parts: list[str], ticks: Sequence[str], band: float, baseline: float) -> None:
    every = max(1, math.ceil(len(ticks) / 8))  # at most about eight labels, so they never overlap
    for i, label in enumerate(ticks):
        if (len(ticks) - 1 - i) % every:
            continue  # counted back from the last (today), which always has its label
        x = LEFT + band * (i + 0.5)
        parts.append(f'<text x="{_num(x)}" y="{_num(baseline + 16)}" text-anchor="middle" font-size="12" '
                     f'fill="{AXIS}">{_attr(label)}</text>')


def _legend(series: Sequence[Series], extra: Sequence[tuple[str, str]] = ()) -> str:
    items = [f'<li><span class="chart-swatch" style="background:{_attr(s.color)}" aria-hidden="true"></span>'
             f'{_attr(s.label)}</li>' for s in series]
    items += [f'<li><span class="chart-mark" aria-hidden="true">{_attr(mark)}</span>{_attr(text)}</li>'
              for mark, text in extra]
    return '<ul class="chart-legend">' + "".join(items) + "</ul>"


def _table(chart_id: str, caption: str, details: str, category_header: str, categories: Sequence[str],
           series: Sequence[Series], lang: str, total_label: str | None = None,
           notes: Sequence[str] | None = None) -> str:
    head = f'<th scope="col">{_attr(category_header)}</th>' + "".join(
        f'<th scope="col" class="num">{_attr(s.label)}</th>' for s in series)
    if total_label:
        head += f'<th scope="col" class="num">{_attr(total_label)}</th>'
    rows = []
    for i, category in enumerate(categories):
        cells = []
        total = 0.0
        for s in series:
            value = s.values[i]
            total += value
            estimated = bool(s.estimated and s.estimated[i])
            cells.append(f'<td class="num">{"≈ " if estimated else ""}{_attr(format_number(value, lang))}</td>')
        if total_label:
            cells.append(f'<td class="num">{_attr(format_number(total, lang))}</td>')
        note = notes[i] if notes and notes[i] else ""
        label = _attr(category) + (f' <span class="chart-mark">{_attr(note)}</span>' if note else "")
        rows.append(f'<tr><th scope="row">{label}</th>{"".join(cells)}</tr>')
    return (f'<details class="chart-data"><summary>{_attr(details)}</summary>'
            f'<table class="data-table" id="{_attr(chart_id)}-table"><caption>{_attr(caption)}</caption>'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></details>')


def _svg_open(chart_id: str, height: int, title: str, desc: str) -> list[str]:
    cid = _attr(chart_id)
    return [f'<svg class="chart-svg" id="{cid}" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
            f'aria-labelledby="{cid}-title {cid}-desc" preserveAspectRatio="xMidYMid meet" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">',
            f'<title id="{cid}-title">{_attr(title)}</title>', f'<desc id="{cid}-desc">{_attr(desc)}</desc>']


def stacked_bars(*, chart_id: str, title: str, desc: str, categories: Sequence[str], ticks: Sequence[str],
                 series: Sequence[Series], lang: str, category_header: str, total_label: str, details: str,
                 notes: Sequence[str] | None = None, note_legend: Sequence[tuple[str, str]] = (),
                 bar_title: str = "{category}: {total}", height: int = 260) -> Markup:
    """A stacked bar chart: ``series`` stacked bottom to top in the order given, one bar per category.
    ``notes``: a short mark per category drawn above its bar (e.g. "*" for a day counted in part), explained by
    ``note_legend`` [(mark, text)]. ``bar_title``: each bar's tooltip, with {category} and {total}."""
    n = len(categories)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    maximum, step = nice_ceiling(max(totals, default=0))
    plot_h = height - TOP - BOTTOM
    baseline = TOP + plot_h
    band = (WIDTH - LEFT - RIGHT) / max(n, 1)
    bar_w = max(2.0, band * 0.68)
    parts = _svg_open(chart_id, height, title, desc)
    _y_axis(parts, TOP, plot_h, maximum, step, lang)
    for i, category in enumerate(categories):
        x = LEFT + band * i + (band - bar_w) / 2
        tip = bar_title.format(category=category, total=format_number(totals[i], lang))
        breakdown = ", ".join(f"{s.label} {format_number(s.values[i], lang)}" for s in series if s.values[i])
        parts.append(f'<g class="chart-bar" data-category="{_attr(category)}" data-total="{_num(totals[i])}">'
                     f'<title>{_attr(tip)}{(" — " + _attr(breakdown)) if breakdown else ""}</title>')
        y = baseline
        for s in series:
            value = s.values[i]
            h = plot_h * value / maximum if maximum else 0
            y -= h
            parts.append(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}" height="{_num(h)}" '
                         f'fill="{_attr(s.color)}" stroke="#ffffff" stroke-width="{1 if h >= 3 else 0}" '
                         f'data-series="{_attr(s.key)}" data-value="{_num(value)}"/>')
        note = notes[i] if notes and notes[i] else ""
        if totals[i] or note:
            label = (format_number(totals[i], lang) if totals[i] else "") + note
            parts.append(f'<text x="{_num(x + bar_w / 2)}" y="{_num(y - 4)}" text-anchor="middle" '
                         f'font-size="{10 if n > 14 else 12}" fill="{INK if not note else MISSING}">'
                         f'{_attr(label)}</text>')
        parts.append("</g>")
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(baseline)}" y2="{_num(baseline)}" '
                 f'stroke="{AXIS}" stroke-width="1"/>')
    _x_labels(parts, ticks, band, baseline)
    parts.append("</svg>")
    # Every text in it went through _attr (escaped, quotes too); numbers through _num.
    return Markup(f'<figure class="chart" aria-labelledby="{_attr(chart_id)}-caption">'  # nosec B704
                  f'<figcaption id="{_attr(chart_id)}-caption">{_attr(title)}</figcaption>'
                  + "".join(parts) + _legend(series, note_legend)
                  + _table(chart_id, title, details, category_header, categories, series, lang, total_label, notes)
                  + "</figure>")


def line_panels(*, chart_id: str, title: str, desc: str, categories: Sequence[str], ticks: Sequence[str],
                panels: Sequence[Series], lang: str, category_header: str, details: str,
                note_legend: Sequence[tuple[str, str]] = (), panel_height: int = 120) -> Markup:
    """Each series in a panel of its own (its own scale), one above the other over the same categories: a line
    through one point per category; an estimated value is a hollow point."""
    n = len(categories)
    band = (WIDTH - LEFT - RIGHT) / max(n, 1)
    gap = 40
    height = TOP + len(panels) * (panel_height + gap) - gap + BOTTOM
    parts = _svg_open(chart_id, height, title, desc)
    top = TOP
    for panel in panels:
        plot_h = panel_height
        maximum, step = nice_ceiling(max(panel.values, default=0), 2)
        parts.append(f'<g class="chart-panel" data-series="{_attr(panel.key)}">')
        parts.append(f'<text x="{LEFT}" y="{_num(top - 10)}" font-size="13" font-weight="600" fill="{INK}">'
                     f'{_attr(panel.label)}</text>')
        _y_axis(parts, top, plot_h, maximum, step, lang)
        points = []
        for i, value in enumerate(panel.values):
            x = LEFT + band * (i + 0.5)
            y = top + plot_h - plot_h * value / maximum
            points.append((x, y, value, bool(panel.estimated and panel.estimated[i]), categories[i]))
        if len(points) > 1:
            parts.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                _attr(panel.color), " ".join(f"{_num(x)},{_num(y)}" for x, y, *_ in points)))
        for x, y, value, estimated, category in points:
            shown = ("≈ " if estimated else "") + format_number(value, lang)
            fill = "#ffffff" if estimated else panel.color
            parts.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="3.5" fill="{fill}" stroke="{_attr(panel.color)}" '
                         f'stroke-width="2" data-category="{_attr(category)}" data-series="{_attr(panel.key)}" '
                         f'data-value="{_num(value)}" data-estimated="{str(estimated).lower()}">'
                         f'<title>{_attr(category)}: {_attr(shown)} {_attr(panel.label)}</title></circle>')
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(top + plot_h)}" y2="{_num(top + plot_h)}" '
                     f'stroke="{AXIS}" stroke-width="1"/>')
        parts.append("</g>")
        top += plot_h + gap
    _x_labels(parts, ticks, band, top - gap)
    parts.append("</svg>")
    # Every text in it went through _attr (escaped, quotes too); numbers through _num.
    return Markup(f'<figure class="chart" aria-labelledby="{_attr(chart_id)}-caption">'  # nosec B704
                  f'<figcaption id="{_attr(chart_id)}-caption">{_attr(title)}</figcaption>'
                  + "".join(parts) + _legend(panels, note_legend)
                  + _table(chart_id, title, details, category_header, categories, panels, lang)
                  + "</figure>")

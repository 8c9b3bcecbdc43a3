"""PDF backend with ReportLab: A4, DejaVu Sans (it has every Vietnamese glyph), charts as images, page numbers, and
internal links from each figure row to its entry in the evidence appendix.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape  # nosec B406 - escapes text for reportlab's markup; parses nothing

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from reports.i18n import Texts
from reports.layout import Chart, Document, Heading
from reports.layout import Paragraph as Para
from reports.layout import Table as Tbl

FONT = "DejaVuSans"
FONT_BOLD = "DejaVuSans-Bold"
MONO = "DejaVuSansMono"
# Debian's fonts-dejavu-core first; matplotlib ships the same fonts, so a machine without the Debian package
# still renders Vietnamese correctly.
FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu")]


class FontMissing(RuntimeError):
    pass


@lru_cache(maxsize=1)
def register_fonts() -> None:
    import matplotlib

    dirs = FONT_DIRS + [Path(matplotlib.get_data_path()) / "fonts" / "ttf"]
    for name, filename in ((FONT, "DejaVuSans.ttf"), (FONT_BOLD, "DejaVuSans-Bold.ttf"),
                           (MONO, "DejaVuSansMono.ttf")):
        path = next((d / filename for d in dirs if (d / filename).is_file()), None)
        if path is None:
            raise FontMissing(f"{filename} not found in {', '.join(map(str, dirs))} (install fonts-dejavu-core)")
        pdfmetrics.registerFont(TTFont(name, str(path)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11)
    return {
        "body": base,
        "note": ParagraphStyle("note", parent=base, textColor=colors.HexColor("#777777")),
        "title": ParagraphStyle("title", parent=base, fontName=FONT_BOLD, fontSize=18, leading=23),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=13, leading=17,
                                   textColor=colors.HexColor("#1565c0")),
        "h1": ParagraphStyle("h1", parent=base, fontName=FONT_BOLD, fontSize=12.5, leading=16, spaceBefore=10,
                             spaceAfter=4, textColor=colors.HexColor("#0d47a1")),
        "h2": ParagraphStyle("h2", parent=base, fontName=FONT_BOLD, fontSize=10.5, leading=14, spaceBefore=6),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9.2),
        "num": ParagraphStyle("num", parent=base, fontSize=7.5, leading=9.2, alignment=TA_RIGHT),
        "head": ParagraphStyle("head", parent=base, fontName=FONT_BOLD, fontSize=7.5, leading=9.2),
        "mono": ParagraphStyle("mono", parent=base, fontName=MONO, fontSize=6.5, leading=8),
    }


def _table(block: Tbl, st: dict, width: float) -> Table:
    columns = len(block.headers)
    evidence_width = 19 * mm  # fits "Bằng chứng" / "Evidence" and a label such as E123
    weights = list(block.widths or [1.0] * (columns - 1))
    total = sum(weights)
    col_widths = [(width - evidence_width) * w / total for w in weights] + [evidence_width]
    rows = [[Paragraph(escape(h), st["head"]) for h in block.headers]]
    for cells, label in zip(block.rows, block.evidence):
        row = [Paragraph(escape(c), st["num"] if i in block.numeric else st["cell"]) for i, c in enumerate(cells)]
        row.append(Paragraph(f'<a href="#ev-{label}" color="#1565c0">{label}</a>' if label else "", st["cell"]))
        rows.append(row)
    table = Table(rows, colWidths=col_widths, repeatRows=1)
    table.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3ecf7")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7f7f7")]),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]))
    return table


def _chart(block: Chart, st: dict, width: float) -> KeepTogether:
    reader = ImageReader(io.BytesIO(block.png))
    w, h = reader.getSize()
    scale = min(width / w, 1.0 if w < width else width / w)
    image = Image(io.BytesIO(block.png), width=w * scale, height=h * scale)
    links = " ".join(f'<a href="#ev-{x}" color="#1565c0">{x}</a>' for x in block.evidence)
    return KeepTogether([image, Paragraph(f"{escape(block.caption)} {links}", st["note"]), Spacer(1, 4)])


def _evidence(doc: Document, st: dict, t: Texts) -> list:
    flow = [Paragraph(f'<a name="evidence"/>{escape(t("evidence_title"))}', st["h1"]),
            Paragraph(escape(t("evidence_intro")), st["note"])]
    for entry in doc.evidence:
        ev = entry.evidence
        parts = [Paragraph(f'<a name="ev-{entry.label}"/><b>{entry.label}</b> - {escape(entry.title)}', st["body"])]
        if ev.alerts:
            parts.append(Paragraph(f"{escape(t('evidence_alerts'))} ({len(ev.alerts)}): "
                                   f"{escape(', '.join(ev.alerts))}", st["mono"]))
        if ev.events:
            parts.append(Paragraph(f"{escape(t('evidence_events'))} ({len(ev.events)}): "
                                   f"{escape(', '.join(ev.events))}", st["mono"]))
        for collection, ids in sorted(ev.other.items()):
            parts.append(Paragraph(f"{escape(t('evidence_other'))} {escape(collection)}: {escape(', '.join(ids))}",
                                   st["mono"]))
        if ev.query:
            parts.append(Paragraph(f"{escape(t('evidence_query'))}: "
                                   f"{escape(json.dumps(ev.query, ensure_ascii=False))}", st["mono"]))
        if ev.truncated:
            parts.append(Paragraph(escape(t("evidence_truncated")), st["note"]))
        parts.append(Spacer(1, 3))
        flow.extend(parts)
    return flow


def render_pdf(doc: Document) -> bytes:
    register_fonts()
    st = _styles()
    t = Texts(doc.lang)
    out = io.BytesIO()
    margin = 15 * mm
    template = SimpleDocTemplate(out, pagesize=A4, leftMargin=margin, rightMargin=margin, topMargin=margin,
                                 bottomMargin=margin + 4 * mm, title=f"{doc.title} - {doc.subtitle}",
                                 author="SOC suite", lang=doc.lang)
    width = A4[0] - 2 * margin
    flow: list = [Paragraph(escape(doc.title), st["title"]), Paragraph(escape(doc.subtitle), st["subtitle"])]
    flow += [Paragraph(escape(line), st["note"]) for line in doc.meta]
    flow.append(Spacer(1, 6))
    for block in doc.blocks:
        if isinstance(block, Heading):
            flow.append(Paragraph(f'<a name="{block.anchor}"/>{escape(block.text)}',
                                  st["h1" if block.level == 1 else "h2"]))
        elif isinstance(block, Para):
            flow.append(Paragraph(escape(block.text), st["note" if block.style == "note" else "body"]))
        elif isinstance(block, Tbl):
            flow.append(_table(block, st, width))
            flow.append(Spacer(1, 4))
        elif isinstance(block, Chart):
            flow.append(_chart(block, st, width))
    flow.extend(_evidence(doc, st, t))

    def footer(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(margin, 8 * mm, f"{doc.title} - {doc.subtitle}"[:120])
        canvas.drawRightString(A4[0] - margin, 8 * mm, t("text.page", n=document.page))
        canvas.restoreState()

    template.build(flow, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()

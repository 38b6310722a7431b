"""Page layout of the bundle PDFs: A4, styles, header and "page N of M" footer, fixed metadata.

Determinism: ``invariant=True`` makes reportlab write a fixed creation date and document id;
title, author, creator and producer are set explicitly, so the bytes depend only on the bundle.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Table, TableStyle

from governance_pipeline.governance.exports.pdf_text import CELL, plain, safe, safe_lines

PRODUCER = "governance_pipeline bundle renderer"
MARGIN = 18 * mm
WIDTH = A4[0] - 2 * MARGIN
INK = colors.HexColor("#1f2933")
RULE = colors.HexColor("#9aa5b1")
SHADE = colors.HexColor("#e4e7eb")

BODY = ParagraphStyle("body", fontName="Helvetica", fontSize=9, leading=12, textColor=INK,
                      alignment=TA_LEFT, spaceAfter=4)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, spaceAfter=0)
CELL_STYLE = ParagraphStyle("cell", parent=BODY, fontSize=7.5, leading=9.5, spaceAfter=0)
CELL_BOLD = ParagraphStyle("cell_bold", parent=CELL_STYLE, fontName="Helvetica-Bold")
MONO = ParagraphStyle("mono", parent=CELL_STYLE, fontName="Courier", fontSize=6.5, leading=8)
H1 = ParagraphStyle("h1", parent=BODY, fontName="Helvetica-Bold", fontSize=13, leading=16,
                    spaceBefore=10, spaceAfter=6)
H2 = ParagraphStyle("h2", parent=BODY, fontName="Helvetica-Bold", fontSize=10.5, leading=13,
                    spaceBefore=8, spaceAfter=4)
TITLE = ParagraphStyle("title", parent=BODY, fontName="Helvetica-Bold", fontSize=22,
                       leading=27, spaceAfter=6)
SUBTITLE = ParagraphStyle("subtitle", parent=BODY, fontSize=12, leading=15, spaceAfter=18)
NOTE = ParagraphStyle("note", parent=BODY, fontSize=8.5, leading=11, textColor=INK,
                      borderColor=RULE, borderWidth=0.6, borderPadding=6, backColor=SHADE,
                      spaceBefore=8, spaceAfter=10)

Cell = str | Flowable


def para(value: object, style: ParagraphStyle = BODY, *, limit: int | None = None) -> Paragraph:
    """A paragraph of record-derived text (escaped)."""
    return Paragraph(safe(value, limit=limit or 2000), style)


def lines(value: object, style: ParagraphStyle = MONO, *, limit: int = 3000) -> Paragraph:
    """Record-derived multi-line text (escaped), its line breaks kept."""
    return Paragraph(safe_lines(value, limit=limit), style)


def markup(text: str, style: ParagraphStyle = BODY) -> Paragraph:
    """A paragraph of the renderer's own markup; record values inside must come from ``safe``."""
    return Paragraph(text, style)


def cell(value: object, *, mono: bool = False) -> Paragraph:
    return Paragraph(safe(value, limit=CELL), MONO if mono else CELL_STYLE)


def table(header: Sequence[str], rows: Sequence[Sequence[Cell]], widths: Sequence[float],
          *, mono: Sequence[int] = ()) -> Table:
    """A ruled table with a repeated header; plain values are escaped cell by cell."""
    assert abs(sum(widths) - 1.0) < 1e-6, "column widths are fractions of the text width"
    head = [Paragraph(safe(h), CELL_BOLD) for h in header]
    body = [[v if isinstance(v, Flowable) else cell(v, mono=i in mono) for i, v in enumerate(r)]
            for r in rows]
    if not body:
        body = [[cell("none recorded")] + [cell("") for _ in header[1:]]]
    t = Table([head, *body], colWidths=[w * WIDTH for w in widths], repeatRows=1)
    t.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), SHADE),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, RULE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]))
    return t


def facts(pairs: Sequence[tuple[str, object]], *, mono: Sequence[str] = ()) -> Table:
    """A two-column label/value table."""
    rows = [[Paragraph(safe(k), CELL_BOLD), cell(v, mono=k in mono)] for k, v in pairs]
    t = Table(rows, colWidths=[0.26 * WIDTH, 0.74 * WIDTH])
    t.setStyle(TableStyle([
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
    ]))
    return t


def _numbered_canvas(header: str, digest: str) -> type[Canvas]:
    """A canvas that knows the page count when it draws each page's header and footer."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (reportlab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            self.saveState()
            self.setFont("Helvetica", 7)
            self.setFillColor(RULE)
            self.setStrokeColor(RULE)
            top = A4[1] - MARGIN + 6 * mm
            if self._pageNumber > 1:
                self.drawString(MARGIN, top, header)
                self.line(MARGIN, top - 2, A4[0] - MARGIN, top - 2)
            bottom = MARGIN - 8 * mm
            self.line(MARGIN, bottom + 9, A4[0] - MARGIN, bottom + 9)
            self.drawString(MARGIN, bottom, f"Content digest (bundle.json, SHA-256): {digest}")
            self.drawRightString(A4[0] - MARGIN, bottom, f"Page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas


def build(story: list[Flowable], *, title: str, subject: str, digest: str) -> bytes:
    """Lay ``story`` out on A4 pages and return the PDF bytes."""
    out = io.BytesIO()
    header = plain(f"{title}", limit=140)
    doc = SimpleDocTemplate(
        out, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
        bottomMargin=MARGIN, invariant=True, title=plain(title, limit=200),
        subject=plain(subject, limit=200), author="governance_pipeline (management)",
        creator=PRODUCER, producer=PRODUCER, keywords=f"bundle-digest:{digest}")
    doc.build(story, canvasmaker=_numbered_canvas(header, digest))
    return out.getvalue()

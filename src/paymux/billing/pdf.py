"""The invoice PDF (``invoice_pdf``), drawn with ReportLab (BSD licence).

Pure but for reading a font file: the same invoice, merchant and locale give the same bytes
(ReportLab's ``invariant`` mode: no creation time or random document id). The text is drawn
with an embedded TrueType font that covers the currency symbols and accented letters Babel
writes (DejaVu Sans when the system has it, else the Bitstream Vera font ReportLab ships), so
``1.234,56 €`` reads back exactly, non-breaking space included. Long invoices flow onto more
pages; the table's header repeats.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from paymux.billing.invoice_document import InvoiceDocument, invoice_document

__all__ = ["invoice_pdf", "render_pdf"]

_SYSTEM_FONTS = Path("/usr/share/fonts/truetype/dejavu")


@cache
def _fonts() -> tuple[str, str]:
    """(regular, bold) font names, registered once."""
    import reportlab

    bundled = Path(reportlab.__file__).parent / "fonts"
    candidates = [
        (_SYSTEM_FONTS / "DejaVuSans.ttf", _SYSTEM_FONTS / "DejaVuSans-Bold.ttf"),
        (bundled / "Vera.ttf", bundled / "VeraBd.ttf"),
    ]
    for regular, bold in candidates:
        if regular.is_file() and bold.is_file():
            pdfmetrics.registerFont(TTFont("PaymuxSans", str(regular)))
            pdfmetrics.registerFont(TTFont("PaymuxSans-Bold", str(bold)))
            return "PaymuxSans", "PaymuxSans-Bold"
    return "Helvetica", "Helvetica-Bold"  # Latin-1 only, but always there


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)


def render_pdf(doc: InvoiceDocument) -> bytes:
    """The PDF of a document (billing/invoice_document.py)."""
    regular, bold = _fonts()
    body = ParagraphStyle("body", fontName=regular, fontSize=9.5, leading=12)
    small = ParagraphStyle("small", parent=body, fontSize=8.5, textColor=colors.HexColor("#555555"))
    right = ParagraphStyle("right", parent=body, alignment=2)
    head = ParagraphStyle("head", parent=body, fontName=bold, fontSize=18, leading=22)
    strong = ParagraphStyle("strong", parent=body, fontName=bold)
    strong_right = ParagraphStyle("strong_right", parent=strong, alignment=2)

    out = io.BytesIO()
    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Invoice {doc.number}",
        author=doc.merchant_name,
        invariant=1,
    )
    story: list[Any] = [
        _p(doc.merchant_name, head),
        Spacer(1, 2 * mm),
        _p(f"{doc.title} {doc.number} — {doc.status_word}", strong),
        Spacer(1, 3 * mm),
    ]
    facts = [[_p(label, small), _p(value, body)] for label, value in doc.dates]
    if doc.customer:
        facts.insert(0, [_p("Billed to", small), _p(doc.customer, body)])
    if facts:
        table = Table(facts, colWidths=[35 * mm, None], hAlign="LEFT")
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story += [table, Spacer(1, 4 * mm)]
    if doc.description:
        story += [_p(doc.description, body), Spacer(1, 4 * mm)]

    rows: list[list[Any]] = [
        [_p("Description", strong), _p("Qty", strong_right), _p("Amount", strong_right)]
    ]
    for line in doc.lines:
        text = line.description if not line.period else f"{line.description}\n{line.period}"
        cell = Paragraph(escape(text).replace("\n", "<br/>"), body)
        rows.append([cell, _p(line.quantity, right), _p(line.amount, right)])
    table = Table(rows, colWidths=[None, 18 * mm, 38 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#cccccc")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [table, Spacer(1, 4 * mm)]
    totals = [[_p(label, right), _p(value, right)] for label, value in doc.totals]
    totals.append([_p(doc.amount_due_label, strong_right), _p(doc.amount_due, strong_right)])
    summary = Table(totals, colWidths=[60 * mm, 38 * mm], hAlign="RIGHT")
    summary.setStyle(TableStyle([("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black)]))
    story.append(summary)
    for note in doc.notes:
        story += [Spacer(1, 4 * mm), _p(note, strong)]
    pdf.build(story)
    return out.getvalue()


def invoice_pdf(
    invoice: dict[str, Any],
    merchant_name: str,
    locale: str,
    *,
    tax_rate_labels: dict[str, str] | None = None,
    customer_label: str | None = None,
) -> bytes:
    """The PDF of an invoice view (Stripe's invoice object) for ``locale``."""
    return render_pdf(
        invoice_document(
            invoice,
            merchant_name,
            locale,
            tax_rate_labels=tax_rate_labels,
            customer_label=customer_label,
        )
    )

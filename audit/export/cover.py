"""The response letter of an export (``cover.pdf``): what was searched, released and withheld, and the requester's
rights, as 5 U.S.C. 552 asks of a response (amount withheld, exemptions, appeal of at least 90 days, FOIA Public
Liaison and OGIS).

The PDF is made of real text (reportlab paragraphs, standard fonts), so it can be read, searched and extracted.
"""

import datetime as dt
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from django.conf import settings
from django.utils import timezone
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Spacer

from ..text import printable

# 5 U.S.C. 552(a)(6)(A)(i)(III)(aa): the appeal period may not be shorter.
MIN_APPEAL_DAYS = 90
DEFAULT_OGIS_CONTACT = (
    "Office of Government Information Services (OGIS), National Archives and Records Administration, "
    "8601 Adelphi Road - OGIS, College Park, MD 20740-6001, ogis@nara.gov, 202-741-5770"
)
# A one-line plain explanation per exemption; keys compared without spaces and case (see exemption_explanation).
EXEMPTION_EXPLANATIONS: dict[str, str] = {
    "(b)(6)": "personal privacy: information whose release would be a clearly unwarranted invasion of personal "
    "privacy.",
    "(b)(7)(C)": "law-enforcement records whose release could reasonably be expected to be an unwarranted "
    "invasion of personal privacy.",
}


def appeal_days(value: Any = None) -> int:
    """The configured appeal period in days, never below the statute's 90."""
    configured = getattr(settings, "FOIA_APPEAL_DAYS", MIN_APPEAL_DAYS) if value is None else value
    return max(MIN_APPEAL_DAYS, int(configured))


def liaison_text(value: Any = None) -> str:
    """``FOIA_PUBLIC_LIAISON`` (a mapping of name, email, phone, or plain text) as one line."""
    liaison = getattr(settings, "FOIA_PUBLIC_LIAISON", "") if value is None else value
    if isinstance(liaison, Mapping):
        return ", ".join(str(liaison[key]) for key in ("name", "email", "phone") if liaison.get(key))
    return str(liaison)


def _setting(name: str, default: str) -> Any:
    # Read when a letter is made, not at import: tests and deployments change settings.
    return lambda: getattr(settings, name, default) or default


@dataclass(frozen=True)
class CoverLetter:
    """Everything a response letter states. The contacts default to the FOIA_* settings at creation time.

    tracking_number is None for an export made without a FOIA request: the letter then cites no request and
    states no appeal rights (a release outside the FOIA process is not an agency determination to appeal).
    exemptions maps each exemption code to the number of field values withheld under it.
    chain_range is (first, last) chain position covered by the proof; head_hash is the chain hash at last.
    """

    tracking_number: str | None
    requester: str
    request_description: str
    received_on: dt.date | None
    searched: str
    released_count: int
    withheld_fields_count: int
    exemptions: Mapping[str, int]
    chain_range: tuple[int, int] | None
    head_hash: str
    issued_on: dt.date = field(default_factory=timezone.localdate)
    organisation: str = field(default_factory=_setting("FOIA_ORGANISATION", "the agency"))
    public_liaison: str = field(default_factory=liaison_text)
    ogis_contact: str = field(default_factory=_setting("FOIA_OGIS_CONTACT", DEFAULT_OGIS_CONTACT))
    appeal_days: int = field(default_factory=appeal_days)
    appeal_address: str = field(default_factory=_setting("FOIA_APPEAL_ADDRESS", ""))
    verify_file: str = "VERIFY.txt"


def exemption_explanation(code: str) -> str | None:
    """The plain explanation of an exemption code, or None for a code this letter does not know."""
    wanted = _exemption_key(code)
    for known, text in EXEMPTION_EXPLANATIONS.items():
        if _exemption_key(known) == wanted:
            return text
    return None


def _exemption_key(code: str) -> str:
    return re.sub(r"\s+", "", code).lower()


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _text(value: object) -> str:
    # Paragraphs take reportlab's mini-markup: the requester's words must stay words, and their control characters
    # visible escape codes rather than glyphs a PDF viewer drops or garbles.
    return escape(printable(value))


class _Styles:
    def __init__(self) -> None:
        sheet = getSampleStyleSheet()
        self.body = ParagraphStyle("body", parent=sheet["BodyText"], fontName="Helvetica", fontSize=10.5, leading=14)
        self.heading = ParagraphStyle(
            "heading", parent=sheet["Heading3"], fontName="Helvetica-Bold", fontSize=11.5, spaceBefore=10
        )
        self.title = ParagraphStyle("title", parent=sheet["Title"], fontName="Helvetica-Bold", fontSize=15)
        self.mono = ParagraphStyle("mono", parent=self.body, fontName="Courier", fontSize=9, leading=12)


def _opening(info: CoverLetter, s: _Styles) -> list[Any]:
    received = f" received on {info.received_on.isoformat()}" if info.received_on else ""
    if info.tracking_number:
        lines = [
            Paragraph(f"Re: Freedom of Information Act request {_text(info.tracking_number)}", s.heading),
            Paragraph(f"Dear {_text(info.requester or 'requester')},", s.body),
            Paragraph(
                "This letter responds to your request under the Freedom of Information Act (FOIA), 5 U.S.C. 552,"
                f"{received}, tracking number <b>{_text(info.tracking_number)}</b>. Please quote this number in any "
                "correspondence about your request.",
                s.body,
            ),
        ]
    else:
        lines = [
            Paragraph("Re: Release of audit records", s.heading),
            Paragraph(f"Dear {_text(info.requester or 'recipient')},", s.body),
            Paragraph(
                f"This letter accompanies a release of records from the audit trail of {_text(info.organisation)}"
                f"{received}. It was not made in answer to a tracked FOIA request.",
                s.body,
            ),
        ]
    if info.request_description:
        lines.append(Paragraph(f"You asked for: <i>{_text(info.request_description)}</i>", s.body))
    return lines


def _release(info: CoverLetter, s: _Styles) -> list[Any]:
    flowables: list[Any] = [
        Paragraph("What we searched", s.heading),
        Paragraph(f"We searched {_text(info.searched or 'the audit trail')}.", s.body),
        Paragraph("What we are releasing", s.heading),
    ]
    records = _plural(info.released_count, "record", "records")
    if info.released_count == 0:
        flowables.append(Paragraph("The search found no records that answer your request: 0 records released.", s.body))
    elif info.withheld_fields_count == 0:
        flowables.append(Paragraph(f"We are releasing {records} in full. No information was withheld.", s.body))
    else:
        withheld = _plural(info.withheld_fields_count, "field value", "field values")
        flowables.append(
            Paragraph(
                f"We are releasing {records}. We reviewed each record and released every segregable part; "
                f"{withheld} in total were withheld. Each withheld value is removed from the files and marked at its "
                "place with the exemption that applies, e.g. [REDACTED (b)(6)].",
                s.body,
            )
        )
    if info.exemptions:
        items = []
        for code, count in sorted(info.exemptions.items()):
            explanation = exemption_explanation(code)
            cited = f"<b>{_text(code)}</b>: {_plural(count, 'value', 'values')} withheld"
            text = f"{cited} — {_text(explanation)}" if explanation else f"{cited}."
            items.append(ListItem(Paragraph(text, s.body)))
        flowables += [
            Paragraph("Exemptions applied", s.heading),
            Paragraph("Information was withheld under the following exemptions of 5 U.S.C. 552(b):", s.body),
            ListFlowable(items, bulletType="bullet", leftIndent=14),
        ]
    return flowables


def _verification(info: CoverLetter, s: _Styles) -> list[Any]:
    flowables: list[Any] = [
        Paragraph("How to check these records", s.heading),
        Paragraph(
            "The records come with a signed manifest (manifest.json) and a proof (proof.jsonl); "
            f"{_text(info.verify_file)} explains how to check them offline with our public key alone: that every "
            "released value is genuine, that nothing in the range was removed or reordered, and that each withheld "
            "value is accounted for. Entries of the range that your request does not cover appear in the proof as "
            "a digest only.",
            s.body,
        ),
    ]
    if info.chain_range is not None:
        first, last = info.chain_range
        flowables.append(
            Paragraph(
                f"The proof covers chain positions {first:,} to {last:,}. The chain hash at position {last:,}, "
                "which the signed manifest records, is:",
                s.body,
            )
        )
        flowables.append(Paragraph(_text(info.head_hash), s.mono))
    return flowables


def _rights(info: CoverLetter, s: _Styles) -> list[Any]:
    flowables: list[Any] = []
    if info.tracking_number:
        days = appeal_days(info.appeal_days)
        flowables += [
            Paragraph("Your right to appeal", s.heading),
            Paragraph(
                "If you are not satisfied with this response, you may appeal in writing. Your appeal must be "
                f"postmarked or sent electronically within <b>{days} days</b> of the date of this letter, to: "
                f"{_text(info.appeal_address or info.organisation)}. Please mark the letter and envelope, or the "
                f'subject line, "Freedom of Information Act Appeal" and quote {_text(info.tracking_number)}.',
                s.body,
            ),
        ]
    flowables += [
        Paragraph("Help with your request", s.heading),
        Paragraph(
            "You may contact our FOIA Public Liaison for further assistance and to discuss any aspect of your "
            f"request: {_text(info.public_liaison)}.",
            s.body,
        ),
        Paragraph(
            "You may also contact the Office of Government Information Services (OGIS) at the National Archives "
            "and Records Administration to inquire about the FOIA mediation services it offers: "
            f"{_text(info.ogis_contact)}.",
            s.body,
        ),
    ]
    return flowables


def render_cover_letter(info: CoverLetter) -> bytes:
    """The letter as PDF bytes. The same ``info`` gives the same bytes (reportlab's invariant mode), so a letter
    can be made again and compared with the one a manifest hashed."""
    s = _Styles()
    buffer = io.BytesIO()
    title = f"FOIA response {info.tracking_number}" if info.tracking_number else "Release of audit records"
    footer = f"{info.tracking_number or 'Audit records release'} - {info.organisation}"

    def number_pages(canvas: Canvas, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(inch, 0.6 * inch, footer)
        canvas.drawRightString(LETTER[0] - inch, 0.6 * inch, f"Page {doc.page}")
        canvas.restoreState()

    document = SimpleDocTemplate(
        buffer,
        pagesize=LETTER,
        leftMargin=inch,
        rightMargin=inch,
        topMargin=inch,
        bottomMargin=inch,
        title=title,
        author=info.organisation,
        subject="Response to a request for records",
        invariant=True,
    )
    story: list[Any] = [
        Paragraph(_text(info.organisation), s.title),
        Paragraph(f"Date: {info.issued_on.isoformat()}", s.body),
        Spacer(1, 6),
        *_opening(info, s),
        *_release(info, s),
        *_verification(info, s),
        *_rights(info, s),
        Spacer(1, 12),
        Paragraph("Sincerely,", s.body),
        Paragraph(f"FOIA Officer, {_text(info.organisation)}", s.body),
    ]
    document.build(story, onFirstPage=number_pages, onLaterPages=number_pages)
    return buffer.getvalue()

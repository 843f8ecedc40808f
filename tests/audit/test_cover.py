"""The response letter (cover.pdf): a real-text PDF stating the tracking number, what was searched, the counts, each
exemption with a plain explanation, the appeal rights (at least 90 days) and the Public Liaison and OGIS contacts."""

import dataclasses
import datetime as dt
import io
from typing import Any

import pytest
from pypdf import PdfReader

from audit.export.cover import CoverLetter, render_cover_letter

OGIS = (
    "Office of Government Information Services (OGIS), National Archives and Records Administration, "
    "8601 Adelphi Road - OGIS, College Park, MD 20740-6001, ogis@nara.gov, 202-741-5770"
)
HEAD = "3f" * 32


@pytest.fixture(autouse=True)
def _foia_settings(settings):
    settings.FOIA_ORGANISATION = "Department of Examples"
    settings.FOIA_PUBLIC_LIAISON = {"name": "Pat Liaison", "email": "liaison@examples.gov", "phone": "202-555-0100"}
    settings.FOIA_OGIS_CONTACT = OGIS
    settings.FOIA_APPEAL_DAYS = 90
    settings.FOIA_APPEAL_ADDRESS = "FOIA Appeals, Department of Examples, 1 Main St, Washington, DC 20001"


def letter(**overrides: Any) -> CoverLetter:
    values: dict[str, Any] = {
        "tracking_number": "FOIA-2026-000123",
        "requester": "Jane Doe",
        "request_description": "All lock events of January 2026",
        "received_on": dt.date(2026, 11, 20),
        "searched": "audit entries with action starting LOCK., from 2026-01-01 to 2026-02-01 (exclusive)",
        "released_count": 12,
        "withheld_fields_count": 30,
        "exemptions": {"(b)(6)": 24, "(b)(7)(C)": 6},
        "chain_range": (5, 400),
        "head_hash": HEAD,
        "issued_on": dt.date(2026, 12, 1),
        **overrides,
    }
    return CoverLetter(**values)


def pdf_text(pdf: bytes) -> str:
    """The text pypdf extracts, with line breaks and runs of spaces folded to single spaces."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_letter_is_a_pdf_with_the_request_the_search_and_the_counts():
    """The PDF opens with pypdf; its text has the tracking number, the receipt date, what was searched and the
    released and withheld counts, and its title names the request."""
    pdf = render_cover_letter(letter())

    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata.title == "FOIA response FOIA-2026-000123"
    text = pdf_text(pdf)
    assert "FOIA-2026-000123" in text
    assert "Department of Examples" in text
    assert "received on 2026-11-20" in text
    assert "Date: 2026-12-01" in text
    assert "All lock events of January 2026" in text
    assert "We searched audit entries with action starting LOCK., from 2026-01-01 to 2026-02-01 (exclusive)." in text
    assert "We are releasing 12 records." in text
    assert "30 field values in total were withheld" in text
    assert "[REDACTED (b)(6)]" in text


def test_letter_cites_each_exemption_with_its_count_and_explanation():
    """Each exemption is listed with its count and a one-line plain explanation; an unknown code is listed as
    given, with its count."""
    text = pdf_text(render_cover_letter(letter(exemptions={"(b)(6)": 24, "(b)(7)(C)": 6, "(b)(3)": 1})))

    assert "(b)(6): 24 values withheld — personal privacy" in text
    assert "clearly unwarranted invasion of personal privacy" in text
    assert (
        "(b)(7)(C): 6 values withheld — law-enforcement records whose release could reasonably be expected to be "
        "an unwarranted invasion of personal privacy" in text
    )
    assert "(b)(3): 1 value withheld." in text


def test_letter_states_appeal_rights_liaison_and_ogis():
    """The appeal paragraph gives 90 days and the appeal address; the Public Liaison's name, email and phone and
    the OGIS contact follow."""
    text = pdf_text(render_cover_letter(letter()))

    assert "within 90 days of the date of this letter" in text
    assert "FOIA Appeals, Department of Examples, 1 Main St, Washington, DC 20001" in text
    assert "Freedom of Information Act Appeal" in text
    assert "Pat Liaison, liaison@examples.gov, 202-555-0100" in text
    assert OGIS in text


def test_letter_explains_the_verification_material():
    """The letter says the records come with a signed manifest and a proof that VERIFY.txt explains, and gives the
    chain range and head hash."""
    text = pdf_text(render_cover_letter(letter()))

    assert "signed manifest (manifest.json) and a proof (proof.jsonl); VERIFY.txt explains" in text
    assert "chain positions 5 to 400" in text
    assert HEAD in text


def test_a_longer_configured_appeal_period_is_stated(settings):
    """FOIA_APPEAL_DAYS above 90 is the period the letter gives."""
    settings.FOIA_APPEAL_DAYS = 120

    text = pdf_text(render_cover_letter(letter()))

    assert "within 120 days" in text
    assert "90 days" not in text


@pytest.mark.parametrize("configured", [30, "45", 0])
def test_a_shorter_appeal_period_is_raised_to_90_days(settings, configured):
    """A setting below the statute's 90 days is clamped to 90."""
    settings.FOIA_APPEAL_DAYS = configured

    info = letter()
    text = pdf_text(render_cover_letter(info))

    assert info.appeal_days == 90
    assert "within 90 days" in text


def test_a_shorter_period_given_directly_is_raised_to_90_days():
    """Even a CoverLetter built with appeal_days=30 states 90 days."""
    text = pdf_text(render_cover_letter(letter(appeal_days=30)))

    assert "within 90 days" in text
    assert "30 days" not in text


def test_contacts_are_read_from_settings_when_the_letter_is_made(settings):
    """Changed settings apply to the next letter; a plain-text liaison setting is used as given."""
    settings.FOIA_ORGANISATION = "Bureau of Records"
    settings.FOIA_PUBLIC_LIAISON = "Sam Helper, help@records.gov"

    text = pdf_text(render_cover_letter(letter()))

    assert "Bureau of Records" in text
    assert "Sam Helper, help@records.gov" in text


def test_letter_without_a_request_cites_none_and_states_no_appeal():
    """An export made without a FOIA request says so, cites no tracking number and no appeal rights; the contacts
    and the counts are still there."""
    text = pdf_text(render_cover_letter(letter(tracking_number=None, request_description="")))

    assert "FOIA-" not in text
    assert "not made in answer to a tracked FOIA request" in text
    assert "appeal" not in text.lower()
    assert "We are releasing 12 records." in text
    assert OGIS in text


def test_nothing_withheld_and_nothing_found_are_stated():
    """With no withheld values the letter says so; with no records found it says 0 records were released."""
    full = pdf_text(render_cover_letter(letter(withheld_fields_count=0, exemptions={})))
    empty = pdf_text(render_cover_letter(letter(released_count=0, withheld_fields_count=0, exemptions={})))

    assert "We are releasing 12 records in full. No information was withheld." in full
    assert "Exemptions applied" not in full
    assert "0 records released" in empty


def test_requester_text_is_printed_literally_not_as_markup():
    """Markup characters in the requester's words appear as typed (escaped), never interpreted."""
    text = pdf_text(render_cover_letter(letter(requester="<b>Jane</b> & Sons", request_description="a < b > c")))

    assert "Dear <b>Jane</b> & Sons," in text
    assert "a < b > c" in text


def test_same_letter_gives_the_same_bytes():
    """Rendering is reproducible, so a letter can be made again and compared with a manifest's hash."""
    info = letter()

    assert render_cover_letter(info) == render_cover_letter(dataclasses.replace(info))
    assert render_cover_letter(info) != render_cover_letter(letter(released_count=13))

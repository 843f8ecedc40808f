"""Verifiable exports of the audit trail: a ZIP with the records, the proof, a signed manifest and a cover letter."""

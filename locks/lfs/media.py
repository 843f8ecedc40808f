"""The Git LFS media type: the client sends and accepts only this (or plain JSON)."""

from rest_framework.renderers import JSONRenderer

from auditproject.parsers import UnicodeJSONParser

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"


class LfsJSONRenderer(JSONRenderer):
    media_type = LFS_MEDIA_TYPE


class LfsJSONParser(UnicodeJSONParser):
    media_type = LFS_MEDIA_TYPE

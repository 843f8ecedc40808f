"""The Git LFS media type: the client sends and accepts only this (or plain JSON)."""

from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"


class LfsJSONRenderer(JSONRenderer):
    media_type = LFS_MEDIA_TYPE


class LfsJSONParser(JSONParser):
    media_type = LFS_MEDIA_TYPE

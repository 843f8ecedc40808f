"""The Git LFS File Locking API, as the real git-lfs client speaks it.

Every error carries a ``message`` (the client prints nothing useful without one), 401 is only for missing or
wrong credentials (a 401 makes the client retry with other credentials), and verify never answers 404 (the
client would then switch verification off for good).
"""

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from auditproject.exceptions import first_error_message

from .. import services
from ..exceptions import LockConflict
from ..models import FileLock, Repository
from ..paths import InvalidPath, normalize_path
from ..selectors import lock_list
from .media import LfsJSONParser, LfsJSONRenderer
from .serializers import CreateLockSerializer, ListLocksSerializer, UnlockSerializer, VerifyLocksSerializer, lock_json

DEFAULT_PAGE = 100
MAX_PAGE = 1000
FORCE_REASON = "forced through the Git LFS API (git lfs unlock --force)"


class LfsBasicAuthentication(BasicAuthentication):
    www_authenticate_realm = "Git LFS"


def lfs_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request_id = getattr(context.get("request"), "request_id", "")
    if isinstance(exc, LockConflict):
        return Response(
            {"lock": lock_json(exc.lock), "message": exc.message, "request_id": request_id},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, ObjectDoesNotExist):
        exc = Http404(str(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        # git-lfs reads 422 as "the request was wrong", which is what a bad path or parameter is.
        response.status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
        message = first_error_message(response.data)
    else:
        message = str(response.data.get("detail", "")) if isinstance(response.data, dict) else str(response.data)
    response.data = {"message": message, "request_id": request_id}
    return response


class LfsApiView(APIView):
    # The Git LFS locking protocol is git-lfs's own wire contract, not part of this project's OpenAPI document.
    schema = None
    renderer_classes = [LfsJSONRenderer]
    parser_classes = [LfsJSONParser]
    authentication_classes = [LfsBasicAuthentication]
    permission_classes = [IsAuthenticated]

    def get_exception_handler(self) -> Any:
        return lfs_exception_handler

    def repository(self, slug: str) -> Repository:
        try:
            return Repository.objects.get(slug=slug)
        except Repository.DoesNotExist:
            raise Http404(f"Unknown repository '{slug}': ask an administrator to register it") from None


def _number(text: str) -> int | None:
    """``text`` as a lock id or cursor: ASCII digits only (str.isdigit() is true of "²" too, which int() refuses)."""
    return int(text) if text.isascii() and text.isdigit() else None


def _after_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    after = _number(cursor)
    if after is None:
        raise exceptions.ValidationError({"cursor": ["Not a cursor this server gave out."]})
    return after


def _page(locks: Any, cursor: str | None, limit: int | None) -> tuple[list[FileLock], str | None]:
    """Keyset page over lock ids; the cursor is the id the next page starts at."""
    # A larger limit is served in pages of MAX_PAGE: the client follows next_cursor either way.
    size = min(limit or DEFAULT_PAGE, MAX_PAGE)
    rows = list(locks.filter(id__gte=_after_cursor(cursor))[: size + 1])
    next_cursor = str(rows[size].pk) if len(rows) > size else None
    return rows[:size], next_cursor


class LfsLocksApi(LfsApiView):
    def get(self, request: Request, repository: str) -> Response:
        repo = self.repository(repository)
        params = ListLocksSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        locks = lock_list(actor=request.user, repository=repo.slug)
        if "path" in params.validated_data:
            try:
                locks = locks.filter(path=normalize_path(params.validated_data["path"]))
            except InvalidPath as exc:
                raise exceptions.ValidationError({"path": [str(exc)]}) from exc
        if "id" in params.validated_data:
            lock_pk = _number(params.validated_data["id"])
            locks = locks.filter(pk=lock_pk) if lock_pk is not None else locks.none()
        page, next_cursor = _page(locks, params.validated_data.get("cursor"), params.validated_data.get("limit"))
        body: dict[str, Any] = {"locks": [lock_json(lock) for lock in page]}
        if next_cursor:
            body["next_cursor"] = next_cursor
        return Response(body)

    def post(self, request: Request, repository: str) -> Response:
        repo = self.repository(repository)
        data = CreateLockSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lock = services.checkout(
            actor=request.user,
            repository=repo,
            path=data.validated_data["path"],
            ref_name=data.validated_data.get("ref", {}).get("name", ""),
        )
        return Response({"lock": lock_json(lock)}, status=status.HTTP_201_CREATED)


class LfsVerifyApi(LfsApiView):
    def post(self, request: Request, repository: str) -> Response:
        try:
            repo = self.repository(repository)
        except Http404 as exc:
            # A 404 here makes the client disable lock verification for this remote for good.
            raise exceptions.PermissionDenied(str(exc)) from exc
        data = VerifyLocksSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        page, next_cursor = _page(
            lock_list(actor=request.user, repository=repo.slug),
            data.validated_data.get("cursor"),
            data.validated_data.get("limit"),
        )
        body: dict[str, Any] = {
            "ours": [lock_json(lock) for lock in page if lock.owner_id == request.user.pk],
            "theirs": [lock_json(lock) for lock in page if lock.owner_id != request.user.pk],
        }
        if next_cursor:
            body["next_cursor"] = next_cursor
        return Response(body)


class LfsUnlockApi(LfsApiView):
    def post(self, request: Request, repository: str, lock_id: str) -> Response:
        repo = self.repository(repository)
        data = UnlockSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lock_pk = _number(lock_id)
        owner_id = (
            FileLock.objects.filter(pk=lock_pk, repository=repo).values_list("owner_id", flat=True).first()
            if lock_pk is not None
            else None
        )
        if owner_id is None:
            raise Http404(f"No lock {lock_id} in {repo.slug}")
        # The client sends force=true whenever the file has uncommitted changes, for the owner too: releasing
        # one's own lock is a plain check-in, not an override that needs the force right.
        if data.validated_data["force"] and owner_id != request.user.pk:
            lock = services.force_checkin(actor=request.user, lock_id=lock_pk, reason=FORCE_REASON)
        else:
            lock = services.checkin(actor=request.user, lock_id=lock_pk)
        return Response({"lock": lock_json(lock)})

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..models import FileLock, Repository
from ..paths import InvalidPath, normalize_path
from ..selectors import lock_list
from .serializers import CheckoutInputSerializer, ForceCheckinInputSerializer, LockFilterSerializer, LockSerializer


class LockPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class LockListApi(APIView):
    """GET: the locks, filtered by repository, path or owner. POST: check a file out."""

    # Also read by the schema generator: the GET's answer is documented as a page of locks, with its parameters.
    pagination_class = LockPagination

    @extend_schema(parameters=[LockFilterSerializer], responses={200: LockSerializer(many=True)})
    def get(self, request: Request) -> Response:
        filters = LockFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        path = filters.validated_data["path"]
        if path:
            try:
                path = normalize_path(path)
            except InvalidPath as exc:
                raise ValidationError({"path": [str(exc)]}) from exc
        locks = lock_list(actor=request.user, **{**filters.validated_data, "path": path})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(locks, request, view=self)
        return paginator.get_paginated_response(LockSerializer(page, many=True).data)

    @extend_schema(request=CheckoutInputSerializer, responses={201: LockSerializer})
    def post(self, request: Request) -> Response:
        data = CheckoutInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repository = get_object_or_404(Repository, slug=data.validated_data.pop("repository"))
        lock = services.checkout(actor=request.user, repository=repository, **data.validated_data)
        return Response(LockSerializer(lock).data, status=status.HTTP_201_CREATED)


class LockCheckinApi(APIView):
    @extend_schema(request=None, responses={200: LockSerializer})
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(FileLock, pk=pk)
        lock = services.checkin(actor=request.user, lock_id=pk)
        return Response(LockSerializer(lock).data)


class LockForceCheckinApi(APIView):
    @extend_schema(request=ForceCheckinInputSerializer, responses={200: LockSerializer})
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(FileLock, pk=pk)
        data = ForceCheckinInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lock = services.force_checkin(actor=request.user, lock_id=pk, reason=data.validated_data["reason"])
        return Response(LockSerializer(lock).data)

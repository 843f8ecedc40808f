from rest_framework.pagination import CursorPagination

from .. import conf


class NewestFirstCursorPagination(CursorPagination):
    """Keyset pagination on the id: no COUNT and no OFFSET, however large the table."""

    ordering = "-id"
    page_size_query_param = "page_size"

    def get_page_size(self, request):  # type: ignore[no-untyped-def]
        self.page_size = conf.api_page_size()
        self.max_page_size = conf.api_max_page_size()
        return super().get_page_size(request)

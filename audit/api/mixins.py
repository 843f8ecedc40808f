from rest_framework.request import Request

from ..actions import AuditAction
from ..services import Outcome, record


class RecordsDeniedAttemptsMixin:
    """A refused call by an authenticated user is itself an entry (PCI DSS 10.2.1.4)."""

    denied_action: str = AuditAction.ACCESS_DENIED
    denied_entity: str = "AuditLog"

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> None:
        if request.user and request.user.is_authenticated:
            record(
                self.denied_action,
                entity=self.denied_entity,
                outcome=Outcome.DENIED,
                meta={"path": request.path, "method": request.method},
                actor=request.user,
                independent=True,
            )
        super().permission_denied(request, message=message, code=code)  # type: ignore[misc]

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from .actions import AuditAction
from .services import Outcome, record


class AuditedTokenAuthentication(TokenAuthentication):
    """Token authentication whose rejected tokens are recorded (never the token itself).

    Basic authentication needs no such class: it calls ``authenticate()``, whose failure signal is recorded.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        try:
            return super().authenticate_credentials(key)
        except AuthenticationFailed as exc:
            record(
                AuditAction.USER_LOGIN_FAILED,
                entity="User",
                outcome=Outcome.FAILURE,
                meta={"method": "token", "error": str(exc.detail)},
                independent=True,
            )
            raise

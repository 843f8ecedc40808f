from typing import Any

from django.core.exceptions import ValidationError


def validate_branch_scope(value: Any) -> dict[str, list[int]]:
    """``{"allow": [unique positive integers]}`` and nothing else; anything else is an error on ``branch_scope``."""
    if not isinstance(value, dict) or set(value) != {"allow"}:
        raise ValidationError({"branch_scope": 'Must be an object with exactly one key, "allow".'})
    allow = value["allow"]
    if not isinstance(allow, list):
        raise ValidationError({"branch_scope": '"allow" must be a list of branch ids.'})
    # bool is an int in Python; true/false are not branch ids.
    if any(type(item) is not int or item <= 0 for item in allow):
        raise ValidationError({"branch_scope": '"allow" may hold positive integers only.'})
    if len(set(allow)) != len(allow):
        raise ValidationError({"branch_scope": '"allow" lists a branch id twice.'})
    return {"allow": list(allow)}

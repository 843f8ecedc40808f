"""validate_branch_scope: a group's branch scope is ``{"allow": [unique positive integers]}`` and nothing else."""

import pytest
from django.core.exceptions import ValidationError

from rbac.scope import validate_branch_scope


@pytest.mark.parametrize("value", [{"allow": []}, {"allow": [1, 2]}, {"allow": [7]}, {"allow": [3, 1, 2]}])
def test_valid_scopes_are_returned_unchanged(value):
    """An empty list and lists of distinct positive integers are accepted and returned as given (order kept)."""
    assert validate_branch_scope(value) == value


def test_the_returned_scope_is_a_copy():
    """The result does not share its list with the input: changing one later does not change the other."""
    value = {"allow": [1, 2]}

    result = validate_branch_scope(value)
    value["allow"].append(3)

    assert result == {"allow": [1, 2]}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param([1, 2], id="list"),
        pytest.param("allow", id="string"),
        pytest.param(42, id="int"),
        pytest.param('{"allow": [1]}', id="json-text"),
    ],
)
def test_non_dict_is_refused(value):
    """Anything but a JSON object is an error on branch_scope."""
    with pytest.raises(ValidationError) as excinfo:
        validate_branch_scope(value)

    assert set(excinfo.value.message_dict) == {"branch_scope"}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"allow": [1], "deny": [2]}, id="extra-key"),
        pytest.param({"Allow": [1]}, id="wrong-case"),
        pytest.param({"deny": [1]}, id="other-key"),
    ],
)
def test_keys_other_than_exactly_allow_are_refused(value):
    """The object has exactly one key, "allow": a missing key or any extra key is an error on branch_scope."""
    with pytest.raises(ValidationError) as excinfo:
        validate_branch_scope(value)

    assert set(excinfo.value.message_dict) == {"branch_scope"}


@pytest.mark.parametrize(
    "allow",
    [
        pytest.param(None, id="none"),
        pytest.param(1, id="int"),
        pytest.param("1,2", id="string"),
        pytest.param((1, 2), id="tuple"),
        pytest.param({1, 2}, id="set"),
        pytest.param({"1": True}, id="dict"),
    ],
)
def test_allow_that_is_not_a_list_is_refused(allow):
    """ "allow" must be a list; a tuple, set, string, number or object is an error on branch_scope."""
    with pytest.raises(ValidationError) as excinfo:
        validate_branch_scope({"allow": allow})

    assert set(excinfo.value.message_dict) == {"branch_scope"}


@pytest.mark.parametrize(
    "allow",
    [
        pytest.param([0], id="zero"),
        pytest.param([1, -1], id="negative"),
        pytest.param([True], id="true"),
        pytest.param([False], id="false"),
        pytest.param([1, True], id="one-and-true"),
        pytest.param([1.0], id="float-integral"),
        pytest.param([1.5], id="float"),
        pytest.param(["1"], id="string"),
        pytest.param([None], id="none"),
        pytest.param([[1]], id="nested-list"),
    ],
)
def test_items_other_than_positive_integers_are_refused(allow):
    """Zero, negatives, booleans (ints in Python), floats (even 1.0), strings, null and lists are not branch ids."""
    with pytest.raises(ValidationError) as excinfo:
        validate_branch_scope({"allow": allow})

    assert set(excinfo.value.message_dict) == {"branch_scope"}


@pytest.mark.parametrize("allow", [[1, 1], [1, 2, 3, 2]])
def test_duplicate_branch_ids_are_refused(allow):
    """A branch id listed twice is an error on branch_scope."""
    with pytest.raises(ValidationError) as excinfo:
        validate_branch_scope({"allow": allow})

    assert set(excinfo.value.message_dict) == {"branch_scope"}
    assert "twice" in excinfo.value.message_dict["branch_scope"][0]

"""normalize_path: the one normalisation of lock paths shared by the REST API and the Git LFS API."""

import pytest

from locks.paths import MAX_PATH_LENGTH, InvalidPath, normalize_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("design\\model.psd", "design/model.psd"),
        ("design\\sub\\model.psd", "design/sub/model.psd"),
        (".\\design\\model.psd", "design/model.psd"),
    ],
)
def test_backslashes_become_slashes(raw: str, expected: str) -> None:
    """The git-lfs client on POSIX sends backslashes unchanged; they are turned into forward slashes."""
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("./design/model.psd", "design/model.psd"),
        ("/design/model.psd", "design/model.psd"),
        ("///design/model.psd", "design/model.psd"),
        ("././design/model.psd", "design/model.psd"),
    ],
)
def test_leading_dot_slash_and_slash_are_stripped(raw: str, expected: str) -> None:
    """A leading ``./`` or ``/`` (repeated or not) is dropped: lock paths are relative to the repository root."""
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("design//model.psd", "design/model.psd"),
        ("design/./model.psd", "design/model.psd"),
        ("./design//./sub/.//model.psd", "design/sub/model.psd"),
        ("design/model.psd/", "design/model.psd"),
    ],
)
def test_double_slashes_and_dot_segments_collapse(raw: str, expected: str) -> None:
    """Empty and ``.`` segments anywhere in the path disappear, so one file has exactly one lock path."""
    assert normalize_path(raw) == expected


def test_already_normal_path_is_unchanged() -> None:
    """A clean path, as the git-lfs client usually sends it, comes back as it is."""
    assert normalize_path("design/model.psd") == "design/model.psd"


@pytest.mark.parametrize("raw", ["../secret", "design/../../etc/passwd", "design/..", "..", "design\\..\\x"])
def test_dot_dot_is_refused_with_a_message(raw: str) -> None:
    """A ``..`` segment (also written with backslashes) is refused, not resolved; the message names the problem."""
    with pytest.raises(InvalidPath, match=r"must not contain '\.\.'"):
        normalize_path(raw)


def test_dots_inside_a_name_are_not_dot_dot() -> None:
    """Only a whole ``..`` segment is refused: ``..hidden`` and ``a..b`` are ordinary names."""
    assert normalize_path("..hidden/a..b") == "..hidden/a..b"


@pytest.mark.parametrize("raw", ["", "/", "./", ".", "//", "\\", "./././"])
def test_empty_path_is_refused_with_a_message(raw: str) -> None:
    """A path that is empty once the slashes and dots are gone names no file: refused as empty."""
    with pytest.raises(InvalidPath, match="path is empty"):
        normalize_path(raw)


def test_nul_is_refused_with_a_message() -> None:
    """A NUL character is refused: no file system or Git tree can hold it."""
    with pytest.raises(InvalidPath, match="NUL"):
        normalize_path("design/model\x00.psd")


def test_non_string_is_refused_with_a_message() -> None:
    """JSON may carry a number or null where the path belongs; that is refused, not stringified."""
    with pytest.raises(InvalidPath, match="must be a string"):
        normalize_path(None)


def test_too_long_path_is_refused_with_a_message() -> None:
    """A path longer than the column is refused with the limit in the message, not cut."""
    with pytest.raises(InvalidPath, match=str(MAX_PATH_LENGTH)):
        normalize_path("a/" * MAX_PATH_LENGTH)


def test_longest_allowed_path_is_kept() -> None:
    """Exactly MAX_PATH_LENGTH characters fit the column and are kept whole."""
    path = "a" * MAX_PATH_LENGTH
    assert normalize_path(path) == path


@pytest.mark.parametrize("raw", ["design/modèle.psd", "设计/模型.psd", "art/🎨 final.psd", "Dateien/Über Größe.txt"])
def test_unicode_is_kept(raw: str) -> None:
    """Non-ASCII names (accents, CJK, emoji, spaces) pass through unchanged: verify compares bytes."""
    assert normalize_path(raw) == raw


def test_unicode_is_not_normalised_to_another_form() -> None:
    """NFC and NFD spellings of the same name stay distinct: the server compares paths byte for byte."""
    nfc = "caf\u00e9.psd"
    nfd = "cafe\u0301.psd"
    assert normalize_path(nfc) == nfc
    assert normalize_path(nfd) == nfd

"""One normalisation of lock paths, used by the REST API and the Git LFS API alike."""


class InvalidPath(ValueError):
    """The path cannot name a file inside a repository."""


MAX_PATH_LENGTH = 1024


def normalize_path(raw: object) -> str:
    r"""``".\\design//./model.psd"`` -> ``"design/model.psd"``.

    Backslashes become slashes (the git-lfs client sends them unchanged on POSIX), a leading ``./`` or ``/`` is
    dropped, and empty and ``.`` segments collapse. ``..``, NUL and paths that end up empty are refused.
    """
    if not isinstance(raw, str):
        raise InvalidPath("path must be a string")
    if "\x00" in raw:
        raise InvalidPath("path must not contain NUL characters")
    segments = [segment for segment in raw.replace("\\", "/").split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise InvalidPath(f"path {raw!r} must not contain '..'")
    path = "/".join(segments)
    if not path:
        raise InvalidPath("path is empty")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"path is longer than {MAX_PATH_LENGTH} characters")
    return path

"""Where the workbench keeps its files. Every default lives inside the project
folder (git-ignored) and can be moved with an environment variable."""
from __future__ import annotations

import errno
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from engine.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
SHARED_VOCAB = PROJECT_ROOT.parent / "shared" / "vocab"


def _from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else default


def store_path() -> Path:
    """The DuckDB results store: $WORKBENCH_STORE or .store/workbench.duckdb."""
    return _from_env("WORKBENCH_STORE", PROJECT_ROOT / ".store" / "workbench.duckdb")


def runs_dir() -> Path:
    """Per-run folders (progress file, checkpoints, logs): $WORKBENCH_RUNS or runs/."""
    return _from_env("WORKBENCH_RUNS", PROJECT_ROOT / "runs")


def cache_dir() -> Path:
    """Tokenised data sets and trained tokenizers: $WORKBENCH_CACHE or .cache/."""
    return _from_env("WORKBENCH_CACHE", PROJECT_ROOT / ".cache")


# ---------------------------------------------------------------- names and outputs

MAX_NAME_LENGTH = 200  # a path component is at most 255 bytes; leave room for suffixes
_NAME_RULE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
NAME_RULE_TEXT = (f"letters, digits, '.', '_' and '-' only, not starting with '.', "
                  f"1 to {MAX_NAME_LENGTH} characters")


def validate_name(kind: str, value: str) -> str:
    """`value` unchanged if it is safe as one path component (a run id, a sweep name,
    an annotation type); else InputError naming `kind`, the value and the rule. The
    one check for every id or name that becomes part of a path."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not _NAME_RULE.fullmatch(value):
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "..."
        raise InputError(f"{kind} {shown!r} is not a safe name: use {NAME_RULE_TEXT}")
    return value


def is_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode, so UTF-8 can hold it: no lone surrogate, which
    is what a command-line byte that is not UTF-8 becomes in Python (b'caf\\xe9' ->
    'caf\\udce9'); such text would be accepted, then fail every read of the store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_text(kind: str, value: str) -> str:
    """`value` unchanged if it is a string of valid Unicode (is_unicode); else InputError
    naming `kind` and the value. The one check for free text that is kept (a label, a
    data set name, a path recorded with a run): names that become paths pass
    validate_name, whose rule admits ASCII only."""
    if not isinstance(value, str):
        raise InputError(f"{kind} must be text, got {type(value).__name__} {value!r}")
    if not is_unicode(value):
        raise InputError(f"{kind} {ascii(value[:80])} is not valid UTF-8 text (a byte that is no UTF-8 character, e.g. "
                         "Latin-1 from a terminal or file name); give it in UTF-8")
    return value


def spool_dir(db_path: Path) -> Path:
    """The spool folder that belongs to the database at `db_path` (store/spool.py)."""
    return db_path.with_name(db_path.name + ".spool")


def store_files(db_path: str | Path) -> dict[str, Path]:
    """The files of the store at `db_path` that no output may overwrite (what -> path),
    named without opening it (a running sweep may hold it): the database, its
    write-ahead log and its spool folder, as Store.own_files gives them."""
    db_path = Path(db_path).expanduser()
    return {"the store": db_path, "the store's write-ahead log": db_path.with_name(db_path.name + ".wal"),
            "the store's spool folder": spool_dir(db_path)}


def check_output_path(out: str | Path, *, protected: dict[str, str | Path]) -> Path:
    """`out`, absolute, unless it resolves to one of the `protected` paths (what -> path:
    the store file, its WAL, an input of the same command) or lies inside one (a spool
    folder); then InputError naming both. Also refused: a folder where a file is to be
    written, a parent that cannot be made. Call it before doing the work: it makes the
    missing parent folders, so the work cannot end in a missing folder."""
    target = check_not_protected(out, protected=protected)
    if target.is_dir():
        raise InputError(f"output {out} is a folder; give the path of a file to write")
    make_output_folder(target.parent, out)
    return Path(out).expanduser().absolute()


# what a refused write means, by errno: (the problem, what to do about it)
WRITE_FAILURES = {
    errno.ENOSPC: ("the disk is full", "free space on that disk"),
    errno.EDQUOT: ("the disk quota is used up", "free space within your quota, or raise it"),
    errno.EROFS: ("the file system is read-only", "remount that file system writable"),
    errno.EACCES: ("permission is denied", "choose a place you can write to"),
    errno.EPERM: ("the operation is not permitted", "choose a place you can write to"),
}


def resolved(path: str | Path, what: str = "path") -> Path:
    """`path` absolute with every link followed; InputError naming `what` when the links
    go round in a loop (Path.resolve's RuntimeError) or lead nowhere readable."""
    try:
        return Path(path).expanduser().resolve()
    except (RuntimeError, OSError) as err:  # RuntimeError: "Symlink loop from ..."
        raise InputError(f"{what} {path}: its symbolic links cannot be followed ({err}); "
                         "point at the real folder or file") from None


def check_not_protected(out: str | Path, *, protected: dict[str, str | Path], name: str = "output") -> Path:
    """`out` resolved (links followed), unless it is one of the `protected` paths (what ->
    path) or lies inside one; then InputError naming both (`name`: how the output was given)."""
    target = resolved(out, name)
    for what, path in protected.items():
        kept = resolved(path, what)
        if target == kept or kept in target.parents:
            inside = "" if target == kept else " (inside it)"
            raise InputError(f"{name} {out} would overwrite {what} {kept}{inside}; choose another output path")
    return target


def write_failure(what: str, err: OSError) -> InputError:
    """An InputError saying that writing `what` failed with `err`, and what to do."""
    problem, remedy = WRITE_FAILURES.get(err.errno, (err.strerror or str(err), "choose another output path"))
    return InputError(f"cannot write {what}: {problem}; {remedy} (nothing was written there)")


def write_output(path: str | Path, content: str | bytes | Iterable[str]) -> None:
    """`content` (text as UTF-8; lines of text, written as they come) into the file at
    `path` (checked by check_output_path) all at once: written and fsynced beside it
    under a new temporary name, then renamed over it, so a killed command leaves the old
    file or the new one, never half of one. A link at `path` is replaced, never written
    through. A full or read-only disk is an InputError, and the old file stays."""
    path = Path(path).expanduser()
    parts = [content] if isinstance(content, (str, bytes)) else content
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as handle:
            for part in parts:
                handle.write(part.encode("utf-8") if isinstance(part, str) else part)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        _fsync_folder(path.parent)
    except OSError as err:
        raise write_failure(f"output {path}", err) from None
    finally:
        partial.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_output_folder(folder: str | Path, out: str | Path | None = None) -> Path:
    """`folder` (absolute), made with its parents where missing; InputError naming
    `out` (default: the folder) when it cannot be: a file in the way, no permission."""
    folder, out = Path(folder).expanduser().absolute(), out if out is not None else folder
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InputError(f"output {out}: {blocker} is a file, not a folder; choose another output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"output {out}: cannot make the folder {folder} ({err.strerror}); "
                         "choose a place you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output {out}: the folder {folder} is not writable; choose a place you can write to")
    return folder

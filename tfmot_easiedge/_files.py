"""Atomic file and directory output: the one implementation every package uses.

A writer gets a free temporary path ``.NAME.tmp-PID-HEX`` next to the target, writes a file or a directory
there, and the path is moved onto the target only when the writer succeeds. A writer that raises leaves
neither the target changed nor a temporary path behind; one killed outright (SIGKILL, power loss) leaves a
temporary path that :func:`sweep_leftovers` removes on the next run.

This module imports only the standard library, so plumbing code (the CLI, reports, exporters) can use it
without paying for TensorFlow.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "atomic_output",
    "check_target",
    "read_json",
    "size_on_disk",
    "sweep_leftovers",
    "write_json_atomic",
    "write_text_atomic",
]


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    """Removes a file, a link or a directory tree; a missing path is not an error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif _exists(path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """Returns ``path`` as a Path, refusing to replace an existing one unless ``overwrite``.

    Raises:
        FileExistsError: ``path`` exists (or is a dangling link) and ``overwrite`` is False.

    Example:
        >>> check_target("surely-not-here.bin", overwrite=False).name
        'surely-not-here.bin'
    """
    final = Path(path)
    if _exists(final) and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
    return final


def _commit(tmp: Path, final: Path, overwrite: bool) -> None:
    exists = _exists(final)
    if exists and not overwrite:
        raise FileExistsError(f"{final} appeared while it was being written; pass overwrite=True to replace it")
    if not exists or (tmp.is_file() and final.is_file()):
        os.replace(tmp, final)  # atomic for a file, and for a directory onto a free name
        return
    # A directory cannot be replaced in one step: move the old one aside, move the new one in, drop the old.
    backup = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
    os.rename(final, backup)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(backup, final)
        raise
    _remove(backup)


def _temporary_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields a free temporary path next to ``path``; moves it onto ``path`` when the block succeeds.

    The temporary path is not created: the writer makes a file or a directory there. If the block raises,
    whatever was written is removed and ``path`` is left untouched.

    Args:
        path: the target file or directory.
        overwrite: replace ``path`` if it exists (else :class:`FileExistsError`, before anything is written).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        RuntimeError: the block wrote nothing to the temporary path.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "model.bin"
        >>> with atomic_output(target) as tmp:
        ...     _ = tmp.write_bytes(b"ok")
        >>> target.read_bytes()
        b'ok'
    """
    final = check_target(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(final)
    try:
        yield tmp
        if not _exists(tmp):
            raise RuntimeError(f"the writer wrote nothing to the temporary path {tmp}")
        _commit(tmp, final, overwrite)
    except BaseException:
        _remove(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns ``path`` as a Path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example:
        >>> import tempfile
        >>> p = write_text_atomic(Path(tempfile.mkdtemp()) / "note.txt", "hi\\n")
        >>> p.read_text()
        'hi\\n'
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, *, overwrite: bool = False, indent: int | None = 2) -> Path:
    """Writes ``data`` as JSON (strict: NaN and inf refused) with a final newline to ``path`` atomically.

    The JSON text is made before anything touches the disk, so data that cannot be serialised writes nothing.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: ``data`` holds NaN or inf.
        TypeError: ``data`` holds something JSON cannot represent.

    Example:
        >>> import tempfile
        >>> p = write_json_atomic(Path(tempfile.mkdtemp()) / "a.json", {"a": 1}, indent=None)
        >>> p.read_text()
        '{"a": 1}\\n'
    """
    text = json.dumps(data, indent=indent, allow_nan=False) + "\n"
    return write_text_atomic(path, text, overwrite=overwrite)


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON in ``path``; a file that is not UTF-8 JSON raises ``ValueError`` naming ``what`` (one line).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not JSON.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "bad.json"
        >>> _ = p.write_text("{")
        >>> read_json(p, "a plan")
        Traceback (most recent call last):
        ...
        ValueError: a plan is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} is not JSON ({e})") from None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or undeterminable: keep its files
    return True


def sweep_leftovers(path: str | os.PathLike) -> list[Path]:
    """Removes what a killed writer (SIGKILL, power loss) left next to ``path``; returns what it removed.

    :func:`atomic_output` names its temporary ``.NAME.tmp-PID-HEX``: one whose process is gone is removed, one
    whose process still runs (a concurrent writer) is kept. Backups ``.NAME.old-HEX`` of an interrupted
    directory replacement are removed only when ``path`` itself exists (else they are the only copy, and are
    kept for the user).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> (d / ".out.tmp-999999999-abcd").mkdir()
        >>> [p.name for p in sweep_leftovers(d / "out")]
        ['.out.tmp-999999999-abcd']
    """
    final = Path(path)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    prefix = f".{final.name}.tmp-"
    for entry in sorted(final.parent.glob(f"{glob.escape(prefix)}*")):
        pid_text = entry.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        _remove(entry)
        removed.append(entry)
    if final.exists():
        for entry in sorted(final.parent.glob(f"{glob.escape(f'.{final.name}.old-')}*")):
            _remove(entry)
            removed.append(entry)
    return removed


def size_on_disk(path: str | os.PathLike) -> int:
    """Bytes of a file, or of all files below a directory.

    Example:
        >>> import tempfile
        >>> size_on_disk(write_text_atomic(Path(tempfile.mkdtemp()) / "x", "abc"))
        3
    """
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size

"""A job writes only what is its own (issue 20): the one guard of every writer of the jobs.

Two rules, checked before anything is written:

- A folder given as a job's output (``jobs.synth OUT``, ``jobs.train --out``) is used only when
  it is new, empty, or was claimed by the same job before (``claim_folder``): the job writes
  ``MARKER`` into it, naming itself. A folder of the user's (a real Landslide4Sense release
  given by mistake) is refused, and nothing in it is touched.
- A file or folder is replaced only when the ``MARKER`` of the folder holding it lists it as
  written by the same job and, for a file, unchanged since (size and modification time):
  ``check_replaceable``. A file of the user's that has an output's name is refused.

Every output is written under a temporary name beside it and renamed into place when it is
complete (``output_file``, ``output_folder``), then recorded in the ``MARKER``: an interrupted
job leaves the earlier output (or nothing), never a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import ForeignFileError

MARKER = ".landslide-outputs.json"
"""``{"claimed_by": "jobs.NAME" | null, "outputs": {name: {"job", "kind", "size",
"mtime_ns"}}}``: who made the folder (null when a job only wrote files into a folder of the
user's) and what each job wrote in it."""


def _read(folder: Path) -> dict:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {"claimed_by": None, "outputs": {}}
    if not isinstance(data, dict) or not isinstance(data.get("outputs"), dict):
        return {"claimed_by": None, "outputs": {}}
    return data


def _write(folder: Path, data: dict) -> None:
    write_json_atomic(folder / MARKER, data)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON under a temporary name in the same folder, then rename over `path`.

    The temporary file is created with mode 0666 less the umask, as `open` would (not
    tempfile.mkstemp, whose 0600 survived the rename and hid the file from the group).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _state(path: Path) -> dict:
    """What is recorded of an output: its kind, and a file's size and modification time."""
    st = path.stat()
    if path.is_dir():
        return {"kind": "dir"}
    return {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def claimed_by(folder: str | os.PathLike) -> str | None:
    """The job that claimed ``folder`` (made it, or found it empty), or None."""
    return _read(Path(folder)).get("claimed_by")


def _is_empty(folder: Path) -> bool:
    return all(p.name == MARKER for p in folder.iterdir())


def check_folder(folder: str | os.PathLike, job: str, what: str = "OUT",
                 accept: Callable[[Path], bool] | None = None) -> bool:
    """Refuse (ForeignFileError) a ``folder`` that ``job`` may not write into; writes nothing.

    Accepted: a new folder, an empty one, one that ``job`` claimed before, or one that
    ``accept`` recognises as an earlier output of the job (made before the marker existed).
    ``what`` names the option in the message (``OUT``, ``--out``). Returns whether the folder
    is still to be claimed (new or empty).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ForeignFileError(f"{folder}: {what} exists and is not a folder")
    if not folder.is_dir() or _is_empty(folder):
        return True
    owner = claimed_by(folder)
    if owner == job or (owner is None and accept is not None and accept(folder)):
        return False
    made = (f"was made by python -m {owner}, not python -m {job}" if owner else
            f"is not empty and was not made by python -m {job} (no {MARKER})")
    raise ForeignFileError(f"{folder}: {what} {made}; nothing was written: give a new or "
                           f"empty folder")


def claim_folder(folder: str | os.PathLike, job: str, what: str = "OUT",
                 accept: Callable[[Path], bool] | None = None) -> Path:
    """Make ``folder`` the job's output folder (``check_folder``, then the folder is made, with
    its parents, and MARKER names the job), or refuse (ForeignFileError, nothing written)."""
    folder = Path(folder)
    if not check_folder(folder, job, what, accept):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ForeignFileError(f"{folder}: cannot create {what} ({exc.strerror})") from None
    _write(folder, {**_read(folder), "claimed_by": job})
    return folder


def check_replaceable(path: str | os.PathLike, job: str, kind: str = "file") -> None:
    """Refuse (ForeignFileError) to write ``path`` unless it is absent or the job's own earlier
    output of that ``kind`` ("file" or "dir"), unchanged since it was written."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ForeignFileError(f"{path.parent}: the folder of {path.name} does not exist")
    if not (path.exists() or path.is_symlink()):
        return
    entry = _read(path.parent)["outputs"].get(path.name)
    if (not isinstance(entry, dict) or entry.get("job") != job or path.is_symlink()
            or entry.get("kind") != kind):
        noun = "folder" if path.is_dir() else "file"
        raise ForeignFileError(f"{path}: a {noun} that python -m {job} did not write is "
                               f"there; nothing was written: move it or choose another path")
    if {**entry, **_state(path)} != entry:
        raise ForeignFileError(f"{path}: changed since python -m {job} wrote it; nothing was "
                               f"written: move it or choose another path")


def record(path: str | os.PathLike, job: str) -> None:
    """Note ``path`` (just written) in its folder's MARKER as the job's own output."""
    path = Path(path)
    data = _read(path.parent)
    data["outputs"] = {**data["outputs"], path.name: {"job": job, **_state(path)}}
    _write(path.parent, data)


def remove(path: str | os.PathLike, job: str) -> None:
    """Delete the job's own earlier output ``path`` (refused when it is not the job's)."""
    path = Path(path)
    kind = "dir" if path.is_dir() and not path.is_symlink() else "file"
    check_replaceable(path, job, kind)
    if not (path.exists() or path.is_symlink()):
        return
    if kind == "dir":
        shutil.rmtree(path)
    else:
        path.unlink()
    data = _read(path.parent)
    data["outputs"] = {k: v for k, v in data["outputs"].items() if k != path.name}
    _write(path.parent, data)


def temporary(path: Path) -> Path:
    """The hidden temporary name beside ``path`` (keeping its suffix, which drivers read)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


@contextmanager
def output_file(path: str | os.PathLike, job: str) -> Iterator[Path]:
    """Write ``path`` as the job's output: checked first (``check_replaceable``); yields a
    temporary path to write; renamed into place and recorded when the block ends without an
    error. The temporary file is removed in every case."""
    path = Path(path)
    check_replaceable(path, job, "file")
    tmp = temporary(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: the output was not written")
        os.replace(tmp, path)
        record(path, job)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def output_folder(path: str | os.PathLike, job: str) -> Iterator[Path]:
    """Like ``output_file`` for a folder: yields an empty temporary folder to fill; the job's
    earlier folder of that name is replaced by it when the block ends without an error."""
    path = Path(path)
    check_replaceable(path, job, "dir")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _swap(tmp, path)
        record(path, job)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` at ``path``, removing the earlier folder there (the job's)."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str, job: str) -> Path:
    """A text file (a JSON report) written as the job's output (``output_file``)."""
    with output_file(path, job) as tmp:
        tmp.write_text(text)
    return Path(path)

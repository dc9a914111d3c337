"""What produced an output: one canonical, versioned identity per derived thing.

Every derived array and published file records the identity it was made from, and these
identities alone decide whether anything is reused: the tile store (``tiles``), the predictions
(``predictions``), the pre-event change layers (``change``), the published outputs of a scene
(``products``: the event's "unchanged" check) and the model a worker keeps loaded (``model``).

An identity is a plain JSON record of everything that changes the output, plus the identities
it was derived from (by digest and record), hashed canonically. Two identities are the same
thing exactly when their digests are equal; ``differences`` names what changed between two
records, so a report can say "--dem: dem.tif modified" rather than "different input".

Records hold plain data only. The modules that know a part fill it in: ``tiler.sources`` the
scene's files, conversion, mask and grid; ``unet.bundle`` the model; ``mapping.scene`` the job's
options. This module knows no TensorFlow, no Zarr and no raster format.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = 1
"""The provenance scheme. Bump it when what a record means changes: every stored identity
then differs, so nothing made under the old scheme is reused."""
STORE_LAYOUT = 2
"""The tile store's layout (arrays, chunking, attributes). 2: predictions in their own store."""
KINDS = ("tiles", "model", "predictions", "change", "products", "event")
ATTRIBUTE = "provenance"
"""The name under which stores, COG tags, layer metadata and reports keep an identity."""


@dataclass(frozen=True)
class Identity:
    """One identity: its kind, its record (plain JSON) and the digest of both."""

    kind: str
    record: dict

    @property
    def digest(self) -> str:
        return digest(self.kind, self.record)

    def as_dict(self) -> dict:
        """The form stored in attributes and reports (read back by ``from_dict``)."""
        return {"kind": self.kind, "version": VERSION, "digest": self.digest,
                "record": self.record}


def canonical(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists, keys strings): records compare
    equal whether they were just built or read from a store's attributes."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def digest(kind: str, record: dict) -> str:
    """The canonical hash of a record of ``kind`` under this scheme's VERSION."""
    payload = json.dumps({"kind": kind, "version": VERSION, "record": canonical(record)},
                         sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make(kind: str, record: dict) -> Identity:
    if kind not in KINDS:
        raise ValueError(f"unknown identity kind {kind!r}")
    return Identity(kind, canonical(record))


def from_dict(stored: object) -> Identity | None:
    """An identity read back from an attribute or a report; None when absent, of another
    scheme version, or not an identity at all (it then matches nothing)."""
    if not isinstance(stored, dict) or stored.get("version") != VERSION:
        return None
    kind, record = stored.get("kind"), stored.get("record")
    if kind not in KINDS or not isinstance(record, dict):
        return None
    identity = Identity(kind, record)
    return identity if identity.digest == stored.get("digest") else None


def matches(stored: object, identity: Identity) -> bool:
    """Whether what was stored was made from exactly ``identity``."""
    found = from_dict(stored)
    return found is not None and found.digest == identity.digest


def file_record(path: str | Path) -> dict:
    """A source file as an identity sees it: resolved path, size and modification time (a file
    replaced or edited in place changes its size or mtime)."""
    resolved = Path(path).resolve()
    st = os.stat(resolved)
    return {"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def file_sha256(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of a file's sha256 (for files whose content, not only
    their stat, must decide: the model weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def derived(identity: Identity | None) -> dict | None:
    """How a record names an identity it was derived from: its digest and its record (so that
    ``differences`` can say what changed deep down)."""
    if identity is None:
        return None
    return {"kind": identity.kind, "digest": identity.digest, "record": identity.record}


def differences(old: dict | None, new: dict, limit: int = 3) -> list[str]:
    """What differs between two records, as short ``key: old -> new`` phrases (files as
    "modified", "added" or "removed"), the deepest differing keys first found; at most
    ``limit``."""
    found: list[str] = []
    old, new = canonical(old or {}), canonical(new)
    for key in FIRST:  # another input says more than each of its bands' paths
        if key in old and key in new and old[key] != new[key]:
            _diff(key, old.pop(key), new.pop(key), found)
    _diff("", old, new, found)
    return found[:limit]


FIRST = ("source",)
"""Record keys whose change is named before any other."""


def _diff(where: str, old: Any, new: Any, found: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        if {"path", "size", "mtime_ns"} <= old.keys() and old.get("path") == new.get("path"):
            found.append(f"{new['path']}: modified since (size or time changed)")
            return
        for key in sorted(old.keys() | new.keys()):
            if key == "digest" and isinstance(old.get("record"), dict):
                continue
            _diff(f"{where}.{key}" if where else key, old.get(key), new.get(key), found)
        return
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
            and any(isinstance(v, dict) for v in old)):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(f"{where}[{i}]", a, b, found)
        return
    found.append(f"{where}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    """A value in a few characters; a long string keeps its end (a path keeps its file)."""
    text = json.dumps(value, default=str)
    if len(text) <= 60:
        return text
    return "..." + text[-57:] if isinstance(value, str) else text[:57] + "..."

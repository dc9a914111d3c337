"""The scene job's output folder: checked before any work, written under temporary names, and
published by renames with ``report.json`` last.

Nothing published is removed before a run's new outputs are complete: ``publish`` swaps them in
at the end, so a failed or interrupted re-run leaves the last good map as it was. The job deletes
or replaces only what is its own: the files named in ``OUTPUTS`` or
``OPTIONAL_OUTPUTS`` that an earlier run of the job published there (listed in the folder's
``.outputs.json``), its ``.partial`` work folder and its tile store. A file of the user's that
merely has an output's name (a scene called ``mask.tif`` in the folder given as ``--out``) is
never touched: the job refuses instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from common.errors import OutputError

OUTPUTS = ("probability.tif", "mask.tif", "landslides.gpkg", "preview.png", "report.json")
OPTIONAL_OUTPUTS = ("summary.png", "landslides.geojson", "change.tif", "inventory.gpkg",
                    "probability.vrt")
"""Written only when asked for (``--figure``, ``--vector-format geojson``, several scenes);
published and claimed only when written, and an earlier run's copy is removed like any other
output."""
EVENT_OUTPUTS = ("report.json",)
"""What an event (several scenes) always writes in OUT; each scene's outputs go to
OUT/<scene>/."""
NAMES = (*OUTPUTS, *OPTIONAL_OUTPUTS)
OWNED = ".outputs.json"
"""The job's claim on its outputs: written before the first rename into the folder."""
WORK = ".partial"


def prepare_out(out: Path) -> Path:
    """``out`` made (when missing) and checked writable; resolved."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: --out exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: the output folder is not writable")
    return out


def refuse_outputs_over_inputs(out: Path, inputs: dict[str, str | Path | None]) -> None:
    """Refuse when an input (scene, DEM, model, ...) is one of the paths the job writes."""
    written = {(out / name).resolve(): name for name in (*NAMES, OWNED, WORK)}
    for option, path in inputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if p in written or any(w in p.parents for w in written):
            raise OutputError(f"{path}: {option} is where the job writes its {written.get(p, WORK)}"
                              f" in --out {out}; choose another --out")


def owned(out: Path) -> set[str]:
    """The outputs in ``out`` that an earlier run published: named in OWNED, or in the
    ``outputs`` of its report.json (runs from before OWNED existed)."""
    names: set[str] = set()
    try:
        names |= set(json.loads((out / OWNED).read_text()).get("outputs", []))
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        listed = json.loads((out / "report.json").read_text()).get("outputs", {})
        names |= {n for n, p in listed.items() if Path(p).resolve() == (out / n).resolve()}
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return names & set(NAMES)


def check_outputs_owned(out: Path) -> None:
    """Refuse when a file with an output's name in ``out`` is not the job's own."""
    mine = owned(out)
    for name in NAMES:
        path = out / name
        if (path.exists() or path.is_symlink()) and (name not in mine or path.is_dir()):
            raise OutputError(f"{path}: exists and was not written by this job; move it or "
                              f"choose another --out")


def work_folder(out: Path) -> Path:
    """A fresh ``.partial`` folder in ``out`` for the outputs being written."""
    work = out / WORK
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def publish(out: Path, work: Path, report: dict, required: tuple[str, ...] = OUTPUTS,
            identity: str | None = None) -> None:
    """Replace the published outputs by this run's, all at the end (until now an earlier
    run's map stayed as it was): the earlier report.json is withdrawn first, so the folder
    never claims a mix; this run's files (the optional ones the work folder holds too, added to
    the report's ``outputs``) are renamed into place, an earlier run's outputs this run did not
    make are removed, and report.json comes last. ``identity``: the digest the outputs were made
    from, kept in the claim (``.outputs.json``) beside the names."""
    check_outputs_owned(out)
    optional = [name for name in OPTIONAL_OUTPUTS if (work / name).is_file()]
    names = sorted([*required, *optional], key=lambda n: n == "report.json")  # report.json last
    earlier = owned(out)
    if optional:
        report = {**report, "outputs": {**report.get("outputs", {}),
                                        **{name: str(out / name) for name in optional}}}
    (work / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.json").unlink(missing_ok=True)
    _claim(out, work, sorted(earlier | set(names)), identity)  # both ours until the swap ends
    for name in names[:-1]:
        (work / name).replace(out / name)
    for name in sorted(earlier - set(names)):
        (out / name).unlink(missing_ok=True)
    _claim(out, work, names, identity)
    (work / names[-1]).replace(out / names[-1])
    shutil.rmtree(work)


def _claim(out: Path, work: Path, names: list[str], identity: str | None) -> None:
    claim = work / OWNED
    claim.write_text(json.dumps({"outputs": names, "provenance": identity}))
    claim.replace(out / OWNED)

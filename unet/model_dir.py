"""What a MODEL_DIR of ``jobs.train`` is, without TensorFlow: the job's name for its claim on
the folder (``common.owned``), and how an earlier training's folder is recognised."""

from __future__ import annotations

from pathlib import Path

from common import owned

JOB = "jobs.train"


def earlier_training(folder: Path) -> bool:
    """A folder that ``jobs.train`` wrote before it claimed its folders: a bundle or a
    checkpoint is there."""
    return (folder / "bundle.json").is_file() or (folder / "checkpoints" / "state.json").is_file()


def check_model_dir(out: str | Path) -> None:
    """Refuse an ``--out`` holding files that are not an earlier training (nothing written)."""
    owned.check_folder(out, JOB, "--out", accept=earlier_training)


def claim_model_dir(out: str | Path) -> Path:
    """Make ``--out`` the training's folder (new, empty, or an earlier training's), or refuse."""
    return owned.claim_folder(out, JOB, "--out", accept=earlier_training)

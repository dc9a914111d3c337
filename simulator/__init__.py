"""Synthetic Sentinel-2 landslide scenes and Landslide4Sense-format patches from one simulator."""

JOB = "jobs.synth"
"""The job the simulator writes for: its outputs are claimed in that name (``common.owned``), so
``python -m jobs.synth`` and the library replace each other's outputs and nothing else."""

"""Synthetic Sentinel-2 landslide scenes and Landslide4Sense-format patches from one simulator."""

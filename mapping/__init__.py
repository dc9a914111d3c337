"""Mapping a scene: the one place that composes ``tiler/`` (the store, the rasters, the
polygons) and ``unet/`` (the model) on a Dask cluster. ``jobs/`` calls it; ``tiler/`` and
``unet/`` never import it."""

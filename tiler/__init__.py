"""Scene tiler: whole scenes onto one 10 m grid in Zarr tiles, and back to rasters and polygons."""

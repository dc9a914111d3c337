"""Scene tiler: whole Sentinel-2 scenes onto one 10 m grid in Zarr tiles, and the way back to rasters and polygons."""

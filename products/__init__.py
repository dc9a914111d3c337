"""From the prediction and tile stores to what users open: landslide polygons (vectorising,
merging across blocks, zonal statistics), GeoTIFF/COG rasters, the preview and summary figure,
pre-event change layers, an event's inventory and mosaic, and scoring against a truth raster.
Reads the stores through ``tiler``; never imports ``mapping``, ``jobs`` or TensorFlow."""

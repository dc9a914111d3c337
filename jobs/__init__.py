"""Entry points (python -m jobs.NAME): they compose tiler/ and unet/ and load cluster.yaml."""

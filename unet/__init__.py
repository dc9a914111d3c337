"""The Keras U-Net, its loss and metrics, the Landslide4Sense reader, the model bundle and the per-block predictor."""

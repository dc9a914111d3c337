"""The Keras U-Net, loss, metrics, Landslide4Sense reader, model bundle and block predictor."""

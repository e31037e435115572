"""Models, data, training, rendering and recording for latent-explorer.

Nothing in this package imports Qt, so the headless command line and
distributed training can use it on machines without a display.
"""

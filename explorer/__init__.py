"""The latent-explorer desktop application (PySide6 + pyqtgraph).

Importing this package imports no Qt, so ``latent-explorer train`` stays
headless; the window lives in ``explorer.app``.
"""

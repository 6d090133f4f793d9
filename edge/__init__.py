"""cccd-edge: read and verify Vietnamese chip ID cards at a ward counter."""

__version__ = "0.1.0"

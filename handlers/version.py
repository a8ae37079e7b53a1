"""chatproxy's version, shown by GET /health and at start-up."""

__version__ = "0.1.0"

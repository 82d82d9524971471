"""OCPI 2.3.0 roaming hub."""

__version__ = "0.1.0"

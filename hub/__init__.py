"""OCPI roaming hub: 2.3.0 and 2.2.1 platforms through one hub."""

__version__ = "0.1.0"

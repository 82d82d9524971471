"""Platforms built on third-party OCPI libraries, each run in a virtual environment of its own."""

"""Shared test suites that every backend of a protocol subclasses (like ``zarr.testing``)."""

"""Compression methods, reached through :mod:`asrcompress.compression.registry`."""

"""Shared foundations with no torch: modalities, layout, files, geometry, settings."""

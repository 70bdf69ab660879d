"""Limits applied to untrusted inputs before anything is decoded or allocated."""

DEFAULT_MAX_PIXELS = 178_956_970
"""Largest accepted width x height: Pillow's decompression-bomb limit (2 x 89,478,485)."""

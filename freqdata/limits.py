"""Limits applied to untrusted inputs before anything is decoded or allocated."""

DEFAULT_MAX_PIXELS = 178_956_970
"""Largest accepted width x height: Pillow's decompression-bomb limit (2 x 89,478,485)."""

DEFAULT_MAX_BYTES = 256 * 1024**2
"""Largest accepted input file, in bytes (256 MiB; ``--max-bytes``): checked from the file's
size before it is read, and the read itself stops there."""

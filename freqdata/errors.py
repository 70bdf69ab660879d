"""The exceptions freqdata raises on purpose, under one base class.

The command line maps them to its exit statuses (docs/api.md, "Errors"):

* :class:`UsageError` — bad options or arguments; nothing was done → exit 2;
* :class:`DataError` — the data cannot be used: a bad input (:class:`InputError`, recorded
  per input and the run goes on; exit 1 at the end) or a missing, damaged, incompatible or
  busy store (:class:`StoreError`) → exit 1;
* anything else is a bug in freqdata and is shown as such (a traceback), never as bad usage.

The concrete classes also derive from ``ValueError`` so ``except ValueError`` written against
earlier versions keeps working.
"""

from __future__ import annotations


class FreqdataError(Exception):
    """Base class of every error freqdata raises deliberately."""


class UsageError(FreqdataError, ValueError):
    """Bad options or arguments (an unknown preset, a negative worker count...): nothing done."""


class DataError(FreqdataError, ValueError):
    """Data that cannot be used as asked: a bad input or a bad store."""


class InputError(DataError):
    """One input (an image file, an annotation) cannot be encoded; the reason says why."""


class StoreError(DataError):
    """A store is missing, damaged, incomplete, incompatible with the request, or in use."""

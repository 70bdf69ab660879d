"""What to encode: a folder of images (class sub-folders → labels), one image, or a text file
of paths; and how one input is read (checked to be a regular file of bounded size first).

Local paths and fsspec URLs (``s3://…``, ``gs://…``, ``memory://…``; needs ``fsspec`` and
the matching filesystem package) are listed by the same rules.

Inputs are *named* relative to the root of ``SRC`` (the folder, the image's folder, or the
list file's folder): these names go into a store's ``paths`` array and error log, and into
the inputs digest together with the resolved root, so a store written from ``data/ds`` can
be resumed from ``/home/me/data/ds``. A name that is not valid UTF-8 (a file name with other
bytes) is written with each such byte as ``\\xNN`` (Python's ``backslashreplace``); the
input itself is still read from its real name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Any

from freqdata.errors import InputError, UsageError
from freqdata.limits import DEFAULT_MAX_BYTES
from freqdata.store import is_url

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".mpo"}
)
SRC_KINDS = (
    "a folder of images (class sub-folders → labels), one image file, or a UTF-8 text file "
    "with one path per line"
)


def escape_name(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes a file name carries as surrogate escapes (names
    that are not UTF-8) become ``\\xNN``; other names are returned unchanged."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates not from a file name
        return name.encode("utf-8", "backslashreplace").decode()
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Sources:
    """The ordered inputs of an encode.

    ``paths[i]``: where input ``i`` is read from (a local path, possibly with surrogate
    escapes, or a URL); ``labels[i]``: its label (-1 = unlabelled); ``names[i]``: its name as
    stored (relative to ``root``, escaped; defaults to the escaped ``paths``); ``root``: the
    resolved folder or URL the names are relative to ("" when the paths are given directly).
    """

    paths: list[str]
    labels: list[int]
    class_names: list[str]
    names: list[str] = field(default_factory=list)
    root: str = ""

    def __post_init__(self) -> None:
        if not self.names:
            object.__setattr__(self, "names", [escape_name(p) for p in self.paths])
        if not len(self.paths) == len(self.labels) == len(self.names):
            raise UsageError("Sources: paths, labels and names must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def digest(self) -> str:
        """sha256 of the resolved root, the input names and labels: a resumed encode must see
        the same inputs (however ``SRC`` was spelled)."""
        h = hashlib.sha256()
        if self.root:
            h.update(f"root\t{escape_name(self.root)}\n".encode())
        for name, lab in zip(self.names, self.labels, strict=True):
            h.update(f"{name}\t{lab}\n".encode())
        return h.hexdigest()


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _check_regular(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file: {_file_kind(st.st_mode)}")
    if st.st_size > max_bytes:
        raise InputError(f"{st.st_size} bytes is more than max_bytes={max_bytes} (--max-bytes)")


def _read_local(path: str, max_bytes: int) -> bytes:
    try:
        _check_regular(os.stat(path), max_bytes)  # before opening: no FIFO or device is opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError("a dangling symbolic link (its target does not exist)") from None
        raise InputError("no such file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError("a symbolic link loop") from None
        raise InputError(f"cannot open: {e.strerror}") from None
    try:
        _check_regular(os.fstat(fd), max_bytes)  # the file opened is the file checked
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:
        raise InputError(f"grew past max_bytes={max_bytes} (--max-bytes) while being read")
    return b"".join(chunks)


def _read_url(url: str, max_bytes: int) -> bytes:
    import fsspec

    fs, p = fsspec.core.url_to_fs(url)
    try:
        info = fs.info(p)
    except FileNotFoundError:
        raise InputError("no such file") from None
    if info.get("type") != "file":
        raise InputError(f"not a regular file: {info.get('type')}")
    if (info.get("size") or 0) > max_bytes:
        raise InputError(f"{info['size']} bytes is more than max_bytes={max_bytes} (--max-bytes)")
    with fs.open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"grew past max_bytes={max_bytes} (--max-bytes) while being read")
    return data


def read_input(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of one input (a local path or an fsspec URL), read only after checking that
    it is a regular file of at most ``max_bytes`` bytes; the read stops there too.

    Raises :class:`~freqdata.errors.InputError` naming the reason: missing, a dangling
    symbolic link, a symbolic link loop, a directory, FIFO, device or socket, too large.
    """
    return _read_url(path, max_bytes) if is_url(path) else _read_local(path, max_bytes)


def _is_image(p: str) -> bool:
    return os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES


class _Local:
    """The few filesystem operations listing needs, on the local disk."""

    def root(self, p: str) -> str:
        return os.path.realpath(p)

    def isdir(self, p: str) -> bool:
        return os.path.isdir(p)

    def isfile(self, p: str) -> bool:
        return os.path.isfile(p)

    def entries(self, p: str) -> tuple[list[str], list[str]]:
        """Sub-folders and the other entries of ``p`` (any kind: a FIFO, a dangling link)."""
        dirs, other = [], []
        for e in sorted(os.scandir(p), key=lambda e: e.name):
            (dirs if e.is_dir() else other).append(os.path.join(p, e.name))
        return dirs, other

    def find(self, p: str) -> list[str]:
        """Every entry below ``p`` that is not a folder (symbolic links to folders and folders
        themselves are not followed into); raises on a folder that cannot be read."""

        def fail(e: OSError) -> None:
            raise UsageError(f"cannot list {escape_name(str(e.filename))}: {e.strerror}")

        return [
            os.path.join(d, f) for d, _, files in os.walk(p, onerror=fail) for f in files
        ]

    def relative(self, p: str, root: str) -> str:
        return os.path.relpath(p, root)

    def read_bytes(self, p: str) -> bytes:
        with open(p, "rb") as f:
            return f.read()

    def name(self, p: str) -> str:
        return p


class _Remote:
    """The same operations through fsspec; results are URLs again."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.fs: Any
        self.fs, _ = fsspec.core.url_to_fs(url)
        self.proto = url.split("://", 1)[0]

    def _strip(self, p: str) -> str:
        return self.fs._strip_protocol(p)

    def root(self, p: str) -> str:
        return self.name(self._strip(p))

    def isdir(self, p: str) -> bool:
        return self.fs.isdir(self._strip(p))

    def isfile(self, p: str) -> bool:
        return self.fs.isfile(self._strip(p))

    def entries(self, p: str) -> tuple[list[str], list[str]]:
        items = sorted(self.fs.ls(self._strip(p), detail=True), key=lambda e: e["name"])
        return (
            [self.name(e["name"]) for e in items if e["type"] == "directory"],
            [self.name(e["name"]) for e in items if e["type"] != "directory"],
        )

    def find(self, p: str) -> list[str]:
        return [self.name(f) for f in self.fs.find(self._strip(p))]

    def relative(self, p: str, root: str) -> str:
        return posixpath.relpath(self._strip(p), self._strip(root))

    def read_bytes(self, p: str) -> bytes:
        return self.fs.cat_file(self._strip(p))

    def name(self, p: str) -> str:
        return p if "://" in p else f"{self.proto}://{p}"


def _list_folder(fs: _Local | _Remote, root: str) -> tuple[list[str], list[int], list[str]]:
    dirs, files = fs.entries(root)
    classes = sorted(
        (os.path.basename(d) for d in dirs if not os.path.basename(d).startswith(".")),
        key=escape_name,
    )
    paths = [f for f in files if _is_image(f)]
    labels = [-1] * len(paths)
    for k, name in enumerate(classes):
        folder = f"{root}/{name}"
        found = sorted(
            (f for f in fs.find(folder) if _is_image(f)),
            key=lambda f: escape_name(fs.relative(f, folder)),
        )
        paths += found
        labels += [k] * len(found)
    return paths, labels, [escape_name(c) for c in classes]


def _parse_list(src: str, text: str) -> list[tuple[str, int]]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, lab = line.partition("\t")
        try:
            entries.append((name.strip(), int(lab) if lab.strip() else -1))
        except ValueError:
            raise UsageError(f"{src}:{n}: label {lab!r} is not an integer") from None
    return entries


def list_sources(src: str | os.PathLike) -> Sources:
    """Inputs from ``src`` (a local path or an fsspec URL), in a deterministic order.

    * A folder with sub-folders: each sub-folder is a class, labelled 0..K-1 in sorted name
      order, holding images at any depth; images directly in ``src`` get label -1.
    * A folder without sub-folders: every image in it, label -1.
    * One image file (a name with an image suffix): that image, label -1.
    * A text file: one path per line (relative paths are relative to the file's folder),
      optionally followed by a TAB and an integer label; blank lines and ``#`` lines skipped.
      Lines that are not UTF-8 are read with surrogate escapes (a file name in another
      encoding is still found).

    In a folder, every entry below it with an image suffix (``IMAGE_SUFFIXES``, any case) that
    is not a folder is an input, whatever it is: a FIFO, a device, a dangling symbolic link or
    a link loop is listed, and fails when read (:func:`read_input`), so it is recorded instead
    of silently skipped. Hidden sub-folders of ``src`` are not classes. Whether an input
    decodes is decided by the encoder, which records failures too.

    Raises :class:`~freqdata.errors.UsageError` when ``src`` is none of these, is a binary
    file without an image suffix, or lists no input at all.
    """
    given = str(src).rstrip("/") if is_url(src) else str(src)
    fs: _Local | _Remote = _Remote(given) if is_url(given) else _Local()
    parent = (given.rsplit("/", 1)[0] or "/") if "/" in given else "."
    root = fs.root(given if fs.isdir(given) else parent)
    if fs.isdir(given):
        paths, labels, classes = _list_folder(fs, given)
        names = [escape_name(fs.relative(p, given)) for p in paths]
        what = f"no input in folder {escape_name(given)}: it holds no file with an image suffix "
        what += f"({', '.join(sorted(IMAGE_SUFFIXES))}) in it or in its class sub-folders"
    elif fs.isfile(given) and _is_image(given):
        paths, labels, classes = [given], [-1], []
        names = [escape_name(given.rsplit("/", 1)[-1])]
    elif fs.isfile(given):
        data = fs.read_bytes(given)
        if b"\0" in data:
            raise UsageError(
                f"{escape_name(given)} is a binary file without an image suffix: SRC must be "
                f"{SRC_KINDS}"
            )
        paths, labels, names, classes = [], [], [], []
        for entry, label in _parse_list(given, data.decode("utf-8", "surrogateescape")):
            absolute = is_url(entry) or os.path.isabs(entry)
            name = entry if is_url(entry) else os.path.normpath(entry)
            paths.append(name if absolute else fs.name(f"{parent}/{name}"))
            names.append(escape_name(name))
            labels.append(label)
        what = f"no input in list file {escape_name(given)}: it names no path"
    else:
        raise UsageError(f"{escape_name(given)} does not exist or is not usable: SRC must be "
                         f"{SRC_KINDS}")
    if not paths:
        raise UsageError(what)
    return Sources(paths, labels, classes, names, escape_name(root))

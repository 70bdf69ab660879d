"""What to encode: a folder of images (class sub-folders → labels) or a text file of paths.

Local paths and fsspec URLs (``s3://…``, ``gs://…``, ``memory://…``; needs ``fsspec`` and
the matching filesystem package) are listed by the same rules.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freqdata.store import is_url

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".mpo"}
)


@dataclass(frozen=True)
class Sources:
    """The ordered inputs of an encode: ``paths[i]`` with ``labels[i]`` (-1 = unlabelled)."""

    paths: list[str]
    labels: list[int]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def digest(self) -> str:
        """sha256 of the input list and labels: a resumed encode must see the same inputs."""
        h = hashlib.sha256()
        for p, lab in zip(self.paths, self.labels, strict=True):
            h.update(f"{p}\t{lab}\n".encode())
        return h.hexdigest()


def read_input(path: str) -> str | bytes:
    """An input for the encoders: a local path as is, an fsspec URL as its bytes."""
    if not is_url(path):
        return path
    import fsspec

    with fsspec.open(path, "rb") as f:
        return f.read()


class _Local:
    """The few filesystem operations listing needs, on the local disk."""

    def isdir(self, p: str) -> bool:
        return os.path.isdir(p)

    def isfile(self, p: str) -> bool:
        return os.path.isfile(p)

    def entries(self, p: str) -> tuple[list[str], list[str]]:
        items = sorted(Path(p).iterdir())
        return [str(e) for e in items if e.is_dir()], [str(e) for e in items if e.is_file()]

    def find(self, p: str) -> list[str]:
        return [str(f) for f in Path(p).rglob("*") if f.is_file()]

    def read_text(self, p: str) -> str:
        return Path(p).read_text()

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

    def isdir(self, p: str) -> bool:
        return self.fs.isdir(self._strip(p))

    def isfile(self, p: str) -> bool:
        return self.fs.isfile(self._strip(p))

    def entries(self, p: str) -> tuple[list[str], list[str]]:
        items = sorted(self.fs.ls(self._strip(p), detail=True), key=lambda e: e["name"])
        return (
            [self.name(e["name"]) for e in items if e["type"] == "directory"],
            [self.name(e["name"]) for e in items if e["type"] == "file"],
        )

    def find(self, p: str) -> list[str]:
        return [self.name(f) for f in self.fs.find(self._strip(p))]

    def read_text(self, p: str) -> str:
        return self.fs.cat_file(self._strip(p)).decode()

    def name(self, p: str) -> str:
        return p if "://" in p else f"{self.proto}://{p}"


def _is_image(p: str) -> bool:
    return os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES


def list_sources(src: str | os.PathLike) -> Sources:
    """Inputs from ``src`` (a local path or an fsspec URL), in a deterministic order.

    * A folder with sub-folders: each sub-folder is a class, labelled 0..K-1 in sorted name
      order, holding images at any depth; image files directly in ``src`` get label -1.
    * A folder without sub-folders: every image in it, label -1.
    * A text file: one path per line (relative paths are relative to the file's folder),
      optionally followed by a TAB and an integer label; blank lines and ``#`` lines skipped.

    Images are recognised by suffix (``IMAGE_SUFFIXES``, any case); whether they decode is
    decided by the encoder, which records failures.
    """
    root = str(src).rstrip("/") if is_url(src) else str(src)
    fs: _Local | _Remote = _Remote(root) if is_url(root) else _Local()
    if fs.isdir(root):
        dirs, files = fs.entries(root)
        classes = sorted(
            os.path.basename(d) for d in dirs if not os.path.basename(d).startswith(".")
        )
        paths = [f for f in files if _is_image(f)]
        labels = [-1] * len(paths)
        for k, name in enumerate(classes):
            folder = f"{root}/{name}"
            found = sorted(
                (f for f in fs.find(folder) if _is_image(f)), key=lambda f: f[len(folder) :]
            )
            paths += found
            labels += [k] * len(found)
        return Sources(paths, labels, classes)
    if fs.isfile(root):
        paths, labels = [], []
        parent = root.rsplit("/", 1)[0] if "/" in root else "."
        for n, line in enumerate(fs.read_text(root).splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, _, lab = line.partition("\t")
            try:
                labels.append(int(lab) if lab.strip() else -1)
            except ValueError:
                raise ValueError(f"{src}:{n}: label {lab!r} is not an integer") from None
            name = name.strip()
            absolute = is_url(name) or os.path.isabs(name)
            paths.append(name if absolute else fs.name(f"{parent}/{name}"))
        return Sources(paths, labels, [])
    raise FileNotFoundError(f"{src} is neither a folder of images nor a text file of paths")

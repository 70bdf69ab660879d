"""What to encode: a folder of images (class sub-folders → labels) or a text file of paths."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

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


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def list_sources(src: str | Path) -> Sources:
    """Inputs from ``src``, in a deterministic order.

    * A folder with sub-folders: each sub-folder is a class, labelled 0..K-1 in sorted name
      order, holding images at any depth; image files directly in ``src`` get label -1.
    * A folder without sub-folders: every image in it, label -1.
    * A text file: one path per line (relative paths are relative to the file's folder),
      optionally followed by a TAB and an integer label; blank lines and ``#`` lines skipped.

    Images are recognised by suffix (``IMAGE_SUFFIXES``, any case); whether they decode is
    decided by the encoder, which records failures.
    """
    src = Path(src)
    if src.is_dir():
        classes = sorted(d.name for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths: list[str] = []
        labels: list[int] = []
        top = [
            p for p in sorted(src.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ]
        paths += [str(p) for p in top]
        labels += [-1] * len(top)
        for k, name in enumerate(classes):
            found = _images_under(src / name)
            paths += [str(p) for p in found]
            labels += [k] * len(found)
        return Sources(paths, labels, classes)
    if src.is_file():
        paths, labels = [], []
        for n, line in enumerate(src.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, _, lab = line.partition("\t")
            try:
                labels.append(int(lab) if lab.strip() else -1)
            except ValueError:
                raise ValueError(f"{src}:{n}: label {lab!r} is not an integer") from None
            p = Path(name.strip())
            paths.append(str(p if p.is_absolute() else src.parent / p))
        return Sources(paths, labels, [])
    raise FileNotFoundError(f"{src} is neither a folder of images nor a text file of paths")

"""`read` and `write` any registered format; formats come from plugins (`facet3d_formats`).

Format choice: an explicit ``format=`` wins; otherwise the content is sniffed (so a lying or
missing extension still works), then the extension decides. Writes go to a temporary file in the
destination folder and are renamed into place, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from facet3d.core.errors import FormatError, InputError, UnknownFormatError, UsageError
from facet3d.core.io.record import Geometry
from facet3d.core.specs import FormatSpec, resolve

SNIFF_BYTES = 4096


def registered_formats() -> dict[str, FormatSpec]:
    from facet3d.core.plugins import get_plugins

    return get_plugins().formats()


def _by_extension(path: Path, formats: dict[str, FormatSpec], need: str) -> FormatSpec | None:
    name = path.name.lower()
    # Longest suffix first so ".pcd.bin" beats ".bin"; on a tie, the format named like the
    # extension wins (a plugin's "pts" over a generic text format that also lists ".pts").
    best = None
    for spec in formats.values():
        if getattr(spec, need) is None or spec.explicit_only:
            continue
        for ext in spec.extensions:
            if name.endswith(ext):
                rank = (len(ext), spec.name == ext.lstrip("."))
                if best is None or rank > best[0]:
                    best = (rank, spec)
    return best[1] if best else None


def get_format(name: str, need: str = "read") -> FormatSpec:
    formats = registered_formats()
    spec = formats.get(name.lower())
    if spec is None:
        raise UsageError(f"unknown format '{name}' (known: {', '.join(sorted(formats))})")
    if getattr(spec, need) is None:
        raise UsageError(f"format '{spec.name}' cannot be {'read' if need == 'read' else 'written'}")
    return spec


def check_input_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    return p


def detect_format(path: str | os.PathLike[str]) -> FormatSpec:
    """The format of an existing file: content first (sniffers), then extension."""
    p = check_input_path(path)
    formats = registered_formats()
    with open(p, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head:
        raise FormatError(f"{p}: file is empty")
    by_ext = _by_extension(p, formats, "read")
    # Trust the extension when its own sniffer agrees (or it has none); otherwise ask every sniffer.
    if by_ext is not None and (by_ext.sniff is None or resolve(by_ext.sniff)(head)):
        return by_ext
    for spec in formats.values():
        if spec.read is not None and spec.sniff is not None and not spec.explicit_only and resolve(spec.sniff)(head):
            return spec
    if by_ext is not None:
        return by_ext  # its reader will say precisely what is wrong
    raise UnknownFormatError(f"{p}: unrecognised file format (use --format; known: {', '.join(sorted(formats))})")


def read(path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Geometry:
    """Read a point cloud or mesh file into a `Geometry`."""
    p = check_input_path(path)
    spec = get_format(format, "read") if format else detect_format(p)
    try:
        geom = resolve(spec.read)(p, **options)
    except (InputError, UsageError):
        raise
    except MemoryError:
        raise FormatError(f"{p}: not a valid {spec.name} file (sizes in it are implausible)") from None
    except Exception as exc:  # parsers raise all sorts; the user needs one line naming the file
        raise FormatError(f"{p}: not a valid {spec.name} file ({type(exc).__name__}: {exc})") from exc
    geom.meta.setdefault("format", spec.name)
    geom.meta.setdefault("path", str(p))
    return geom


_DESTINATIONS: dict[Path, Path] = {}  # temporary path -> final path, while atomic_output is open


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    dest = Path(path)
    if dest.is_dir():
        raise UsageError(f"{dest}: is a directory, expected an output file name")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.exists():
        raise UsageError(f"{dest}: folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part" + "".join(dest.suffixes[-1:]), dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _DESTINATIONS[tmp_path] = dest
    try:
        yield tmp_path
        # mkstemp creates 0600; give the result the permissions a plain open() would (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, dest)
    finally:
        _DESTINATIONS.pop(tmp_path, None)
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike[str], obj: Any, indent: int = 1) -> None:
    """``obj`` as JSON at ``path``, atomically; arrays and tensors as lists, other odd values as text."""
    import json

    def default(o: Any) -> Any:
        return o.tolist() if hasattr(o, "tolist") else str(o)

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, default=default) + "\n")


def destination_of(path: str | os.PathLike[str]) -> Path | None:
    """The final path of a temporary file `atomic_output` handed out (a writer that must name side
    files after the final output, like LAS's .wdp, asks here); ``path`` itself when it is not one."""
    p = Path(path)
    if p in _DESTINATIONS:
        return _DESTINATIONS[p]
    return None if p.name.startswith(".") and ".part" in p.name else p


def output_format(name: str, flag: str = "--to") -> tuple[FormatSpec, str]:
    """``--to`` value -> (writer format, output extension): a format name (``ply``, ``kitti-bin``)
    or an extension (``laz`` -> las written as ``.laz``)."""
    text = name.strip().lower().lstrip(".")
    formats = registered_formats()
    spec = formats.get(text)
    if spec is not None and spec.write is not None:
        return spec, spec.extensions[0]
    for spec in formats.values():
        if spec.write is not None and f".{text}" in spec.extensions:
            return spec, f".{text}"
    known = sorted(n for n, f in formats.items() if f.write is not None)
    raise UsageError(f"{flag} {name}: no writer for that format (known: {', '.join(known)})")


def writer_for(path: str | os.PathLike[str]) -> FormatSpec:
    """The format an output path's extension names; UsageError when none does."""
    dest = Path(path)
    spec = _by_extension(dest, registered_formats(), "write")
    if spec is None:
        known = sorted(n for n, f in registered_formats().items() if f.write is not None)
        raise UsageError(f"{dest}: cannot tell the output format from the extension "
                         f"(name one with -F/--out-format; known: {', '.join(known)})")
    return spec


def write(path: str | os.PathLike[str], geometry: Geometry, format: str | None = None, **options: Any) -> Path:
    """Write `geometry` to `path` (format from `format` or the extension), atomically."""
    dest = Path(path)
    spec = get_format(format, "write") if format else writer_for(dest)
    if geometry.kind not in spec.kinds:
        raise UsageError(f"{dest}: format '{spec.name}' cannot store a {geometry.kind.replace('_', ' ')}")
    with atomic_output(dest) as tmp:
        resolve(spec.write)(tmp, geometry, **options)
    return dest

"""Completeness checks run before a volume file is read: a truncated file is refused, never padded with zeros.

SimpleITK's NIfTI reader fills a truncated ``.nii``/``.nii.gz`` with zeros without a word, and its MetaImage reader
prints "data not read completely" to the C stderr and then fails with an unrelated "No such file or directory". So
before reading, :func:`check_complete` checks:

- gzip streams (``.nii.gz``, NRRD ``encoding: gzip`` inline or detached, MetaImage ``CompressedData``): decompressed
  to the end, which needs the end-of-stream marker and the CRC (Python's ``gzip``/``zlib``);
- the data size the header declares against what the file (or its detached data file) holds.

Formats and layouts it cannot judge (MetaImage ``LIST`` data files, NRRD ``byte skip``) are left to the reader.
Imports without torch.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from multimodalseg.errors import UserError

_CHUNK = 1 << 20
# MetaImage element types and their sizes in bytes.
_MET_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}
_NRRD_SIZES = {"char": 1, "signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1,
               "uint8_t": 1, "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2,
               "int16_t": 2, "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
               "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
               "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
               "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
               "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8}


def _truncated(have: int, want: int) -> str:
    return f"file is truncated: it holds {have} of the {want} data bytes its header declares"


def gunzip_size(path: Path, offset: int = 0) -> int:
    """Decompressed size of the gzip stream(s) in ``path`` from byte ``offset``; UserError when incomplete."""
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            with gzip.GzipFile(fileobj=raw) as f:
                total = 0
                while chunk := f.read(_CHUNK):
                    total += len(chunk)
    except EOFError as exc:
        raise UserError("compressed data ends before the gzip end-of-stream marker (truncated file)", path) from exc
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise UserError(f"compressed data is damaged ({exc})", path) from exc
    return total


def _zlib_size(path: Path, offset: int) -> int:
    """Decompressed size of the zlib (or gzip) stream in ``path`` from ``offset`` (MetaImage compressed data)."""
    d = zlib.decompressobj(32 + zlib.MAX_WBITS)  # auto-detects a zlib or gzip header
    total = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(_CHUNK):
                total += len(d.decompress(chunk))
                if d.eof:
                    break
            total += len(d.flush())
    except zlib.error as exc:
        raise UserError(f"compressed data is damaged ({exc})", path) from exc
    if not d.eof:
        raise UserError("compressed data ends before its end-of-stream marker (truncated file)", path)
    return total


def _check_nifti(path: Path) -> None:
    import nibabel

    try:
        header = nibabel.load(str(path)).header
        want = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * int(
            np.dtype(header.get_data_dtype()).itemsize)
    except Exception:  # a header nibabel cannot parse: SimpleITK's reader gives the error
        return
    have = gunzip_size(path) if path.name.lower().endswith(".gz") else path.stat().st_size
    if have < want:
        raise UserError(_truncated(max(0, have - int(header.get_data_offset())),
                                   want - int(header.get_data_offset())), path)


def _header_fields(text: str, sep: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found and not line.startswith("#"):
            fields[key.strip().lower()] = value.strip()
    return fields


def _head(path: Path, limit: int = 1 << 16) -> bytes:
    """The first bytes of a file: enough for a text header (the whole of a detached header)."""
    with open(path, "rb") as f:
        return f.read(limit)


def _check_meta(path: Path) -> None:
    head = _head(path)
    end = head.find(b"ElementDataFile")
    if end < 0:
        return
    line_end = head.find(b"\n", end)
    line_end = len(head) if line_end < 0 else line_end + 1
    fields = _header_fields(head[:line_end].decode("latin-1"), "=")
    try:
        dims = [int(v) for v in fields["dimsize"].split()]
        size = _MET_SIZES[fields["elementtype"].upper()] * int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return
    want = int(np.prod(dims, dtype=np.int64)) * size
    name = fields["elementdatafile"]
    if name.upper() == "LOCAL":
        data, offset = path, line_end
    elif name.upper().startswith("LIST") or "%" in name or " " in name:
        return
    else:
        data, offset = path.parent / name, 0
        if not data.is_file():
            raise UserError(f"data file '{name}' named in the header is missing", path)
    if fields.get("compresseddata", "false").lower() == "true":
        have = _zlib_size(data, offset)
    else:
        have = data.stat().st_size - offset
    if have < want:
        raise UserError(_truncated(have, want), data if data != path else path)


def _check_nrrd(path: Path) -> None:
    raw = _head(path)
    blank = raw.find(b"\n\n")
    header = raw if blank < 0 else raw[:blank]
    fields = _header_fields(header.decode("latin-1"), ":")
    if "byte skip" in fields or "line skip" in fields:
        return
    try:
        dims = [int(v) for v in fields["sizes"].split()]
        want = int(np.prod(dims, dtype=np.int64)) * _NRRD_SIZES[fields["type"].lower()]
    except (KeyError, ValueError):
        return
    encoding = fields.get("encoding", "raw").lower()
    name = fields.get("data file") or fields.get("datafile")
    if name:
        if name.upper().startswith("LIST") or " " in name:
            return
        data, offset = path.parent / name, 0
        if not data.is_file():
            raise UserError(f"data file '{name}' named in the header is missing", path)
    else:
        if blank < 0:
            return
        data, offset = path, blank + 2
    if encoding in ("gzip", "gz"):
        have = gunzip_size(data, offset)
    elif encoding == "raw":
        have = data.stat().st_size - offset
    else:  # ascii, hex, bzip2: the NRRD reader counts those itself
        return
    if have < want:
        raise UserError(_truncated(have, want), data)


def check_complete(path: str | os.PathLike) -> None:
    """Refuse a volume file whose data is shorter than its header declares or whose compressed stream is cut.

    Raises:
        UserError: naming the file: truncated data, a gzip/zlib stream without its end, damaged compressed data,
            or a missing detached data file.
    """
    p = Path(path)
    name = p.name.lower()
    if not p.is_file():
        return
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(p)
    elif name.endswith((".mha", ".mhd")):
        _check_meta(p)
    elif name.endswith((".nrrd", ".nhdr")):
        _check_nrrd(p)
    elif name.endswith(".gz"):
        gunzip_size(p)

"""Durable, atomic file writes used by the recorder.

Every file is written under a hidden temporary name in its final directory,
flushed and fsync'ed, then moved into place with ``os.replace``: a reader
sees either the old file, the new file, or no file -- never half a file.
"""

import json
import os

import numpy as np

__all__ = ["fsync_dir", "save_npy", "write_json", "temp_name"]


def temp_name(path):
    """A hidden sibling of ``path`` unique to this process."""
    head, tail = os.path.split(path)
    return os.path.join(head, ".%s.tmp-%d" % (tail, os.getpid()))


def fsync_dir(path):
    """Make renames and creations inside directory ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. platforms that cannot open directories
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; nothing to do
    finally:
        os.close(fd)


def _write_atomic(path, write):
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_npy(path, array):
    """Save ``array`` as a C-order, little-endian ``.npy`` file at exactly ``path``."""
    arr = np.asarray(array)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and
                                      np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    arr = np.ascontiguousarray(arr)
    _write_atomic(path, lambda f: np.save(f, arr, allow_pickle=False))


def write_json(path, obj):
    """Write ``obj`` as UTF-8 JSON (strict: NaN/Inf are refused)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    data = text.encode("utf-8")
    _write_atomic(path, lambda f: f.write(data))

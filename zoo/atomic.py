"""Atomic writes: a reader, or a run resumed after a kill or a full disk, sees
the previous file or the new one, never a half-written one.

Every artifact the toolkit writes goes through `atomic_path`: the writer fills
a temporary sibling (same folder, so the rename never crosses file systems),
which replaces the target only once it is complete and is removed when the
write fails. Standard library only; used from every layer.
"""

import contextlib
import json
import os
from pathlib import Path

TEMPORARY_PREFIX = ".tmp"


def temporary_path(path):
    """A sibling of `path` to write before renaming into place; unique per
    process (two writers never share it) and keeping the suffix (Keras wants
    `.keras` and `.weights.h5`)."""
    path = Path(path)
    return path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}_{path.name}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; on success it replaces `path`, on any
    error it is removed and the error propagates (`path` is untouched). An
    OSError that names no file (zipfile's, HDF5's) is raised again naming `path`."""
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        named = naming(error, path)
        if named is error:
            raise
        raise named from error
    finally:
        tmp.unlink(missing_ok=True)


def naming(error, path):
    """`error`, or for an OSError that names no file (zipfile's, HDF5's, a
    stream's) a copy naming `path` (raise it `from error`)."""
    if error.errno is None or error.filename is not None:
        return error
    return OSError(error.errno, os.strerror(error.errno), str(path))


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, payload, default=None, indent=2):
    write_text(path, json.dumps(payload, indent=indent, default=default) + "\n")

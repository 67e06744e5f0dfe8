"""A full disk or a folder without write permission stops a script with one line
naming the path, the cause and what to do, exit status 1, no traceback.

Every write of the toolkit is atomic (`zoo.atomic`), so nothing is left
half-written, and a training run or a search resumes from its last complete
epoch or trial when the same command runs again with room on the disk.

HDF5 (under Keras' `.weights.h5` files and keras-tuner's checkpoints) does not
recover from a failed write: h5py reports an error for each object it
releases afterwards, and the library crashes (SIGSEGV) in its exit handler.
Those reports are dropped (the failed write itself raised), and after such a
failure the script leaves with `os._exit(1)` once its message is out, which
skips HDF5's exit handler; the run directory is consistent by then (atomic
writes, the lock released as the error unwound).

Standard library only.
"""

import contextlib
import errno
import functools
import os
import re
import sys

CAUSES = {errno.ENOSPC: "no space left on the device",
          errno.EDQUOT: "the disk quota is used up",
          errno.EACCES: "permission denied",
          errno.EPERM: "operation not permitted",
          errno.EROFS: "the file system is read-only"}
# How TensorFlow and HDF5 word the same causes in errors that are not OSErrors.
WORDINGS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
            "Permission denied": errno.EACCES, "Read-only file system": errno.EROFS}
FREE_SPACE = "free some space or choose a folder on another disk"
WHAT_TO_DO = {errno.ENOSPC: FREE_SPACE, errno.EDQUOT: FREE_SPACE,
              errno.EACCES: "make the folder writable or choose another one",
              errno.EPERM: "make the folder writable or choose another one",
              errno.EROFS: "choose a folder on a writable disk"}
RESUME = "run the same command again: it resumes from the last complete epoch"
AGAIN = "run the same command again"


def storage_failure(error):
    """(errno, path or None) when `error`, or an error that caused it, is a
    read or write refused for lack of space or permission; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        code = error.errno if isinstance(error, OSError) else None
        if code not in CAUSES:
            code = next((c for words, c in WORDINGS.items() if words in text), None)
        if code in CAUSES:
            return code, _path_in(error, text)
        error = error.__cause__ or error.__context__
    return None


def _path_in(error, text):
    path = getattr(error, "filename", None)
    if path is None:  # HDF5: "... filename = 'PATH', ..."; TensorFlow: "PATH; No space ..."
        match = (re.search(r"filename = '([^']+)'", text)
                 or re.match(r"(\S+?); (?:" + "|".join(WORDINGS) + ")", text))
        path = match.group(1) if match else None
    # The file it was writing, not the temporary name it wrote under (zoo.atomic).
    return re.sub(r"\.tmp\d+_", "", str(path)) if path is not None else None


def storage_message(error, retry=RESUME):
    """The one line for a storage failure `error` (see `storage_failure`), or None."""
    found = storage_failure(error)
    if found is None:
        return None
    code, path = found
    where = f"{path}: " if path else ""
    return f"{where}{CAUSES[code]}; {WHAT_TO_DO[code]}, then {retry}"


def _from_hdf5(error):
    """True when `error`, or an error that caused it, is a failed HDF5 write."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if "file write failed" in str(error) or "h5py" in type(error).__module__:
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def stops_on_storage_errors(retry=RESUME):
    """Turns a storage failure inside the block into `error: PATH: CAUSE; what
    to do` on stderr and exit status 1 (other errors pass through)."""
    hdf5_failed = []
    previous_hook = sys.unraisablehook

    def drop_hdf5_repeats(unraisable):
        where = f"{unraisable.object!r} {unraisable.err_msg or ''}"
        if "h5py" in where and storage_failure(unraisable.exc_value):
            hdf5_failed.append(unraisable.exc_value)
            return
        previous_hook(unraisable)

    sys.unraisablehook = drop_hdf5_repeats
    try:
        yield
    except Exception as error:
        message = storage_message(error, retry)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        if hdf5_failed or _from_hdf5(error):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        raise SystemExit(1) from None
    finally:
        sys.unraisablehook = previous_hook


def stopping_on_storage_errors(retry=RESUME):
    """`stops_on_storage_errors` as a decorator for a script's `main`."""
    def decorate(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            with stops_on_storage_errors(retry):
                return main(*args, **kwargs)
        return wrapped
    return decorate

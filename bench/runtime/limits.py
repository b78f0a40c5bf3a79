"""What to do about an OS error: the fix for a file that cannot be read or written, naming the
process limit (``ulimit -n`` open files, ``ulimit -f`` file size) or the disk when that is the
cause, instead of "check the path and its permissions"."""

from __future__ import annotations

import errno

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]  # no resource module (Windows): limits are not read


def _soft(limit_name: str) -> int | None:
    """The soft limit ``RLIMIT_<name>``, None when unlimited or unknown."""
    if resource is None:
        return None
    try:
        soft = resource.getrlimit(getattr(resource, f"RLIMIT_{limit_name}"))[0]
    except (AttributeError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def fd_limit_note() -> str:
    """' (or raise the open-file limit: ulimit -n is N)' when that limit is low (< 256)."""
    soft = _soft("NOFILE")
    return f" (or raise the open-file limit: ulimit -n is {soft})" if soft is not None and soft < 256 else ""


def os_error_fix(err: OSError, default: str = "check the path, its permissions and free disk space") -> str:
    """The fix for an OSError by its errno (``default`` for any other errno)."""
    code = getattr(err, "errno", None)
    if code in (errno.EMFILE, errno.ENFILE):
        soft = _soft("NOFILE")
        return (f"raise the open-file limit (ulimit -n 1024; it is {soft if soft is not None else '?'}) and re-run: "
                "finished rows are kept")
    if code == errno.EFBIG:
        soft = _soft("FSIZE")
        now = f"; it is {soft // 1024} KiB" if soft is not None else ""
        return f"the file size limit was reached: raise it (ulimit -f unlimited{now}) and re-run"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk (or your quota) is full: free space, or pass --out DIR on another disk, and re-run"
    if code == errno.EROFS:
        return "the file system is read-only: pass --out DIR on a writable one"
    if code in (errno.EACCES, errno.EPERM):
        return "no permission: check the path and its permissions (chmod), or pass --out DIR you can write"
    return default

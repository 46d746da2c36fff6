"""Resident memory of a process as Linux reports it: the one reader the benchmarks share.

``VmHWM`` is the peak resident set since the process started or since :func:`reset_peak`;
``VmRSS`` the resident set now. Both are read from ``/proc/PID/status`` (kB there, MB here).
"""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory figure of ``/proc/PID/status`` (``VmHWM``: peak resident set, ``VmRSS``: resident now) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def peak_mb(pid: int | str = "self") -> float:
    """Peak resident set of a process in MB (since it started or since its last :func:`reset_peak`)."""
    return status_mb("VmHWM", pid)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set of a process now, in MB."""
    return status_mb("VmRSS", pid)


def reset_peak() -> None:
    """Reset this process's peak mark to its resident set now, so the next peak read is of what follows."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")

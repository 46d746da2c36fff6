"""Front-end libraries bertviz needs (require.js, d3 5.x, jQuery), served from disk.

bertviz's JavaScript loads these from public CDNs, so its views are blank offline.
``python -m attnviz.views.vendor`` fetches them once from the npm registry with the
machine's ``npm`` into ``attnviz/views/static/vendor/`` (not committed); every file is
pinned by SHA-256. :func:`inline_scripts` then embeds them in a page, so a view
renders with no network at all.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
Progress = Callable[[str], None]


class VendorError(RuntimeError):
    """The vendored JavaScript is missing or could not be fetched; the message says how to fix it."""


@dataclass(frozen=True)
class VendoredFile:
    """One JavaScript file taken from an npm package tarball, pinned by its SHA-256."""

    package: str
    member: str
    name: str
    sha256: str

    @property
    def path(self) -> Path:
        return VENDOR_DIR / self.name


# Versions bertviz 1.4.1 asks for (d3 5.7.0, require.js 2.3.6); its jQuery 2.0.0 is not on npm: 2.2.4 is.
# Order matters: d3 and jQuery run before require.js so they set globals instead of anonymous AMD defines.
FILES = (
    VendoredFile(
        "d3@5.7.0", "package/dist/d3.min.js", "d3.min.js",
        "bdad5585ef9a965ff25458738309b006058c55f2c78d794d25fbecae35014609",
    ),
    VendoredFile(
        "jquery@2.2.4", "package/dist/jquery.min.js", "jquery.min.js",
        "05b85d96f41fff14d8f608dad03ab71e2c1017c2da0914d7c59291bad7a54f8e",
    ),
    VendoredFile(
        "requirejs@2.3.6", "package/require.js", "require.js",
        "9485f0917f97fcf4f63a5ea365200ffd57f123f451382a2f9a1ad2e2fd51ac9b",
    ),
)  # fmt: skip

# After require.js loads, name the already-loaded globals so bertviz's requirejs(['jquery', 'd3']) finds them.
_AMD_NAMES = (
    'define("d3", [], function () { return window.d3; });\n'
    'define("jquery", [], function () { return window.jQuery; });'
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def missing() -> list[VendoredFile]:
    """Vendored files that are absent or whose content does not match the pinned hash."""
    return [f for f in FILES if not f.path.is_file() or _sha256(f.path.read_bytes()) != f.sha256]


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError("npm is not installed; it is needed once to fetch bertviz's JavaScript libraries.")
    return npm


def _fetch(files: list[VendoredFile], progress: Progress) -> None:
    """Download the packages' tarballs with ``npm pack`` and extract the pinned files."""
    with tempfile.TemporaryDirectory(prefix="attnviz-npm-") as folder:
        packages = sorted({f.package for f in files})
        progress(f"npm pack {' '.join(packages)}")
        result = subprocess.run(
            [_npm(), "pack", *packages, "--silent", "--pack-destination", folder],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise VendorError(f"npm pack failed:\n{result.stderr.strip()}")
        VENDOR_DIR.mkdir(parents=True, exist_ok=True)
        for file in files:
            name, version = file.package.rsplit("@", 1)
            with tarfile.open(Path(folder) / f"{name}-{version}.tgz") as archive:
                member = archive.extractfile(file.member)
                if member is None:
                    raise VendorError(f"{file.package} has no file {file.member}")
                data = member.read()
            if _sha256(data) != file.sha256:
                raise VendorError(f"{file.package}:{file.member} does not match its pinned SHA-256")
            staging = file.path.with_suffix(".partial")
            staging.write_bytes(data)
            staging.replace(file.path)  # atomic: a concurrent reader never sees half a file


def ensure(progress: Progress | None = None) -> list[Path]:
    """Fetch whatever vendored file is missing (idempotent; no network when all are present)."""
    report = progress or (lambda message: None)
    absent = missing()
    if absent:
        _fetch(absent, report)
        inline_scripts.cache_clear()
    else:
        report(f"vendored JavaScript present in {VENDOR_DIR}")
    return [f.path for f in FILES]


def _script(source: str, name: str) -> str:
    # In <script>, "</script" or "<!--" would end or confuse the element; the pinned files have neither.
    lowered = source.lower()
    if "</script" in lowered or "<!--" in lowered:
        raise VendorError(f"{name} cannot be inlined in a <script> element")
    return f"<script>\n{source}\n</script>"


@functools.lru_cache(maxsize=1)
def inline_scripts() -> str:
    """``<script>`` elements with d3, jQuery and require.js inlined, registered as AMD modules."""
    absent = missing()
    if absent:
        raise VendorError(
            f"bertviz's JavaScript ({', '.join(f.name for f in absent)}) is not in {VENDOR_DIR}: "
            "run `python -m attnviz.views.vendor` (scripts/setup.sh does) once with access to the npm registry."
        )
    scripts = [_script(f.path.read_text(encoding="utf-8"), f.name) for f in FILES]
    return "\n".join([*scripts, _script(_AMD_NAMES, "AMD names")])


def main() -> int:
    """Command line: ``python -m attnviz.views.vendor`` fetches the files if needed."""
    try:
        paths = ensure(lambda message: print(f"[vendor] {message}"))
    except VendorError as error:
        print(f"[vendor] {error}", file=sys.stderr)
        return 1
    print(f"[vendor] ok: {', '.join(p.name for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

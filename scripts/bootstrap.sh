# Sourced by the other scripts: make .venv and install the pinned requirements
# when they changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="${1:-requirements-dev.txt}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$(basename "$REQUIREMENTS")"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/$REQUIREMENTS" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$REQUIREMENTS"
  echo "$WANT" > "$STAMP"
fi

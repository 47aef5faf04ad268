# Sourced by scripts/demo and scripts/test: create .venv on first use and keep it in sync with
# pyproject.toml. torch and torchvision are pinned to the releases the suite is tested with.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIXCOLLAPSE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.mixcollapse-installed"
want="$(cat "$root/pyproject.toml" "$root/scripts/venv.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
    echo "mixcollapse: creating the virtual environment $venv" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "mixcollapse: installing dependencies into $venv (first run: a few minutes)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"

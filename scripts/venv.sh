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
    # torch's x86_64 wheels from PyPI come with CUDA: about 6 GB in the venv. Say so before pip runs out.
    need_mb=$([ "$(uname -m)" = x86_64 ] && echo 7000 || echo 1500)
    free_mb=$(df -Pm "$venv" | awk 'NR == 2 { print $4 }')
    if [ ! -f "$stamp" ] && [ "${free_mb:-0}" -lt "$need_mb" ]; then
        echo "mixcollapse: only ${free_mb} MB free for $venv; installing torch needs about ${need_mb} MB: free some disk space or set MIXCOLLAPSE_VENV to a folder on a larger disk" >&2
        exit 1
    fi
    echo "mixcollapse: installing dependencies into $venv (first run: a few minutes)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"

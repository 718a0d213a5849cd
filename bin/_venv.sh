# Sourced by bin/test and bin/demo: make a virtualenv and install the project into it.
#   ensure_venv VENV EXTRAS [PIP ARGS...]
# pip runs only when the venv is new or the packaging files changed since the last install
# (a stamp in the venv records their hash), and its output is shown only when it fails, so a
# normal run prints neither pip's nor setuptools' editable-install banners.
ensure_venv() {
    local venv="$1" extras="$2"
    shift 2
    local python="${PYTHON:-python3.11}"
    command -v "$python" >/dev/null || python=python3
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    local stamp
    stamp="$venv/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)-$(printf '%s' "$extras $*" | sha256sum | cut -c1-8)"
    [ -f "$stamp" ] && return 0
    local log
    log=$(mktemp)
    if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip &&
           "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
               -e ".[${extras}]" "$@"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "installing into $venv failed (pip's output above)" >&2
        return 1
    fi
    rm -f "$log" "$venv"/.installed-*
    touch "$stamp"
}

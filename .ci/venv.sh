# Sourced by the scripts that need Python tools from PyPI: makes (once) and
# prints a venv outside the clone, under ECS_GATEWAY_TOOLS (default
# /tmp/ecs-gateway-tools), with exactly the given requirements.
# Usage: venv="$(tool_venv NAME "pkg==1.0 other==2.0")"
tool_venv() {
    local venv="${ECS_GATEWAY_TOOLS:-/tmp/ecs-gateway-tools}/$1" requirements="$2"
    if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$requirements" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        # shellcheck disable=SC2086
        "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements >&2
        echo "$requirements" > "$venv/.installed"
    fi
    echo "$venv"
}

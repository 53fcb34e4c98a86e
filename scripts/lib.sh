# Helpers shared by the scripts in this folder; `source` it.

# start_overc BINARY LOG [ARGS...]
# Starts overc-server on a free port of 127.0.0.1 (in the current directory),
# waits for the line that says where it listens, and sets OVERC_PID and
# OVERC_URL. Returns non-zero, showing the log, if it does not come up.
start_overc() {
    local bin=$1 log=$2
    shift 2
    "$bin" --listen 127.0.0.1:0 "$@" 2>>"$log" &
    OVERC_PID=$!
    OVERC_URL=
    for _ in $(seq 100); do
        OVERC_URL=$(sed -n 's/^overc-server listening on //p' "$log" | head -1)
        [[ -n "$OVERC_URL" ]] && return 0
        sleep 0.1
    done
    echo "overc-server did not start:"
    cat "$log"
    return 1
}

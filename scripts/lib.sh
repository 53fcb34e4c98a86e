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

# start_server LOG CMD...
# Starts CMD in the background, waits for the first http:// address it
# writes to stderr (overc-server and the bare server both announce one), and
# sets SERVER_PID and SERVER_URL. Returns non-zero, showing the log, if none
# comes.
start_server() {
    local log=$1
    shift
    "$@" 2>>"$log" &
    SERVER_PID=$!
    SERVER_URL=
    for _ in $(seq 100); do
        SERVER_URL=$(grep -so 'http://[0-9.:]*' "$log" | head -1 || true)
        [[ -n "$SERVER_URL" ]] && return 0
        sleep 0.1
    done
    echo "$1 did not start:"
    cat "$log"
    return 1
}

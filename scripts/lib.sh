# Helpers shared by the scripts in this folder; `source` it.

# start_server LOG CMD...
# Starts CMD in the background, waits for the line where it says it is
# "listening on http://…" (overc-server and the bare server both do), and
# sets SERVER_PID and SERVER_URL. Returns non-zero, showing the log, if it
# does not come up.
start_server() {
    local log=$1
    shift
    "$@" 2>>"$log" &
    SERVER_PID=$!
    SERVER_URL=
    for _ in $(seq 100); do
        SERVER_URL=$(sed -n 's|.*listening on \(http://[0-9.:]*\).*|\1|p' "$log" 2>/dev/null | head -1)
        [[ -n "$SERVER_URL" ]] && return 0
        sleep 0.1
    done
    echo "$1 did not start:"
    cat "$log"
    return 1
}

# start_overc BINARY LOG [ARGS...]
# start_server for overc-server on a free port of 127.0.0.1 (in the current
# directory); sets OVERC_PID and OVERC_URL.
start_overc() {
    local bin=$1 log=$2 started=0
    shift 2
    start_server "$log" "$bin" --listen 127.0.0.1:0 "$@" || started=$?
    OVERC_PID=$SERVER_PID OVERC_URL=$SERVER_URL
    return "$started"
}

# Sourced by scripts/build_minkowski.sh: run a long, chatty command with its output in a log file.
#
#   run_logged LOG DESCRIPTION COMMAND [ARGS...]
#
# Prints "DESCRIPTION, log: LOG", then one heartbeat line every $MEDGEN_HEARTBEAT_S seconds
# (default 60) while COMMAND runs, and "done in ..." at the end. COMMAND (a program or a shell
# function) writes stdout and stderr to LOG only. On failure: the last $MEDGEN_LOG_TAIL lines
# (default 60) of LOG on stderr and COMMAND's exit status returned. Ctrl-C or SIGTERM stops
# COMMAND and everything it started (its own process group), then exits 130 / 143.

_run_logged_elapsed() {
    local s=$(( SECONDS - $1 ))
    if (( s < 60 )); then echo "${s} s"; else printf '%d min %02d s' $(( s / 60 )) $(( s % 60 )); fi
}

run_logged() {
    local log="$1" desc="$2"; shift 2
    local every="${MEDGEN_HEARTBEAT_S:-60}" tail_n="${MEDGEN_LOG_TAIL:-60}" start=$SECONDS rc=0 pid
    mkdir -p "$(dirname "$log")"
    echo "$desc, log: $log"
    # Job control on for this one job: it gets its own process group, so a signal stops all of it.
    set -m
    ( set +m; "$@" ) </dev/null >"$log" 2>&1 &
    pid=$!
    set +m
    trap 'kill -TERM -- "-$pid" 2>/dev/null; echo "interrupted; log: '"$log"'" >&2; exit 130' INT
    trap 'kill -TERM -- "-$pid" 2>/dev/null; exit 143' TERM
    local next=$(( SECONDS + every ))
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if (( SECONDS >= next )) && kill -0 "$pid" 2>/dev/null; then
            echo "  ... still running ($(_run_logged_elapsed "$start"), $(wc -l <"$log") log lines)"
            next=$(( SECONDS + every ))
        fi
    done
    wait "$pid" || rc=$?
    trap - INT TERM
    if (( rc != 0 )); then
        {
            echo "FAILED (exit $rc) after $(_run_logged_elapsed "$start"): $desc"
            echo "---- last $tail_n lines of $log ----"
            tail -n "$tail_n" "$log"
            echo "---- end of $log ----"
        } >&2
        return "$rc"
    fi
    echo "  done in $(_run_logged_elapsed "$start")"
}

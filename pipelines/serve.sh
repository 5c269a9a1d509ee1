#!/usr/bin/env bash
# Serve a registered generator over HTTP (`mlflow models serve`), and stop it again, whole.
#
#   bash pipelines/serve.sh start models:/vibgan-sim@champion    # http://127.0.0.1:5001/invocations
#   bash pipelines/serve.sh status
#   bash pipelines/serve.sh stop
#
# `mlflow models serve` runs the scoring server (uvicorn) as a child process: killing the mlflow PID leaves
# the server answering. This script starts it in a session of its own and stops the whole process group.
#
# Settings (environment):
#   SERVE_HOST (default 127.0.0.1)   SERVE_PORT (default 5001)   SERVE_WORKERS (default 1)
#   VIBGAN_SERVE_DIR  pid and log files (default ./runs/serve)
#   MLFLOW_TRACKING_URI  where models:/ URIs are resolved (default: the project's mlflow.db)
#   PYTHON  the Python that has vibgan and mlflow (default .venv/bin/python, else python3)
set -euo pipefail

cmd=${1:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$(realpath -m "${VIBGAN_SERVE_DIR:-$PWD/runs/serve}")
HOST=${SERVE_HOST:-127.0.0.1}
PORT=${SERVE_PORT:-5001}
WORKERS=${SERVE_WORKERS:-1}
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
PIDFILE="$DIR/serve.pid"
LOG="$DIR/serve.log"

die() { echo "serve.sh: $*" >&2; exit 1; }
running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "$cmd" in
start)
    model=${2:-}
    [[ -n "$model" ]] || die "start: which model? e.g. bash pipelines/serve.sh start models:/vibgan-sim@champion"
    running && die "already serving (pid $(cat "$PIDFILE"), $LOG); stop it first"
    mkdir -p "$DIR"
    if [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
        MLFLOW_TRACKING_URI=$("$PY" -c "from vibgan.tracking import resolve_tracking_uri as r; print(r())")
        export MLFLOW_TRACKING_URI
    fi
    # check the model first: vibgan refuses pickles and code files, which MLflow's server would load
    "$PY" -c "import sys, vibgan; vibgan.load_generator(sys.argv[1])" "$model" \
        || die "start: $model cannot be loaded (see above); nothing started"
    MLFLOW_BIN="$(dirname "$PY")/mlflow"
    [[ -x "$MLFLOW_BIN" ]] || MLFLOW_BIN=mlflow
    PATH="$(dirname "$PY"):$PATH" setsid "$MLFLOW_BIN" models serve -m "$model" --env-manager local --host "$HOST" --port "$PORT" \
        --workers "$WORKERS" >"$LOG" 2>&1 < /dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 120); do
        if "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "http://$HOST:$PORT/ping" 2>/dev/null; then
            echo "serving $model at http://$HOST:$PORT/invocations (pid $(cat "$PIDFILE"), log $LOG)"
            exit 0
        fi
        running || { tail -20 "$LOG" >&2; rm -f "$PIDFILE"; die "start: the server exited (log above)"; }
        sleep 1
    done
    die "start: no answer on http://$HOST:$PORT/ping after 120 s (log $LOG); bash pipelines/serve.sh stop"
    ;;
stop)
    running || { rm -f "$PIDFILE"; echo "not serving"; exit 0; }
    pid=$(cat "$PIDFILE")
    kill -TERM -- "-$pid" 2>/dev/null || true   # the whole session: mlflow and its uvicorn workers
    for _ in $(seq 1 30); do
        pgrep -g "$pid" >/dev/null 2>&1 || break
        sleep 0.5
    done
    pgrep -g "$pid" >/dev/null 2>&1 && kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    echo "stopped (process group $pid)"
    ;;
status)
    if running; then echo "serving (pid $(cat "$PIDFILE"), http://$HOST:$PORT, log $LOG)"; else echo "not serving"; exit 3; fi
    ;;
*)
    die "usage: bash pipelines/serve.sh start MODEL_URI | status | stop"
    ;;
esac

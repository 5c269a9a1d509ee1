#!/usr/bin/env bash
# A shared MLflow tracking server as teams run it: PostgreSQL backend store + an artifact root.
#
#   bash pipelines/mlflow_server.sh start     # init (first time) and start PostgreSQL and mlflow server
#   bash pipelines/mlflow_server.sh status
#   bash pipelines/mlflow_server.sh stop
#
# Then, on every machine that trains or loads models:
#   export MLFLOW_TRACKING_URI=http://HOST:5000
#   python pipelines/train.py ...      (or --tracking-uri http://HOST:5000)
#
# Settings (environment):
#   VIBGAN_SERVER_DIR  state folder: pgdata/, artifacts/, logs, password (default ./mlflow-server)
#   MLFLOW_HOST        address mlflow listens on (default 127.0.0.1; 0.0.0.0 to serve a team network)
#   MLFLOW_PORT        (default 5000)      PG_PORT     PostgreSQL port (default 5433)
#   MLFLOW_WORKERS     gunicorn/uvicorn workers (default 4)
#   PYTHON             the Python that has vibgan and mlflow (default .venv/bin/python, else python3)
#
# PostgreSQL is the distribution's package (Debian: postgresql, its binaries in /usr/lib/postgresql/N/bin);
# the script installs it with apt-get when it is missing and it runs as root. The database listens on
# 127.0.0.1 only, with a generated password (VIBGAN_SERVER_DIR/pgpass, mode 600); only mlflow talks to it.
# psycopg2 (pip install 'vibgan[server]') is the driver.
set -euo pipefail

cmd=${1:-}
DIR=$(realpath -m "${VIBGAN_SERVER_DIR:-$PWD/mlflow-server}")
HOST=${MLFLOW_HOST:-127.0.0.1}
PORT=${MLFLOW_PORT:-5000}
PGPORT=${PG_PORT:-5433}
WORKERS=${MLFLOW_WORKERS:-4}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi

die() { echo "mlflow_server.sh: $*" >&2; exit 1; }

pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [[ -z "$d" ]]; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "installing PostgreSQL (apt-get install postgresql)..." >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
                || die "apt-get install postgresql failed; install the distribution's postgresql package"
            d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
        else
            die "PostgreSQL not found (/usr/lib/postgresql/N/bin); install the distribution's postgresql package"
        fi
    fi
    echo "$d"
}

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user
as_pg() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_uri() { echo "postgresql+psycopg2://vibgan:$(cat "$DIR/pgpass")@127.0.0.1:$PGPORT/mlflow"; }

healthy() { "$PY" - "$HOST" "$PORT" <<'EOF'
import sys, urllib.request
host = "127.0.0.1" if sys.argv[1] == "0.0.0.0" else sys.argv[1]
try:
    urllib.request.urlopen(f"http://{host}:{sys.argv[2]}/health", timeout=2).read()
except Exception:
    sys.exit(1)
EOF
}

start() {
    local bin
    bin=$(pg_bin)
    "$PY" -c "import mlflow, psycopg2" 2>/dev/null \
        || die "$PY lacks mlflow or psycopg2: pip install -e '.[server]' (or set PYTHON)"
    mkdir -p "$DIR/artifacts" "$DIR/run"
    if [[ $EUID -eq 0 ]]; then
        chown postgres "$DIR/run"
        as_pg test -x "$DIR/run" || die "the postgres user cannot reach $DIR (a parent folder is not \
searchable); set VIBGAN_SERVER_DIR to a folder under a world-searchable path, e.g. /srv/vibgan-mlflow"
    fi
    if [[ ! -f "$DIR/pgdata/PG_VERSION" ]]; then
        echo "initialising PostgreSQL in $DIR/pgdata"
        umask 077
        "$PY" -c "import secrets; print(secrets.token_urlsafe(24))" > "$DIR/pgpass"
        umask 022
        mkdir -p "$DIR/pgdata"
        local pwfile="$DIR/run/pw"
        cp "$DIR/pgpass" "$pwfile"
        if [[ $EUID -eq 0 ]]; then chown postgres "$DIR/pgdata" "$pwfile"; fi
        as_pg "$bin/initdb" -D "$DIR/pgdata" -U vibgan --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 >/dev/null
        rm -f "$pwfile"
    fi
    if ! as_pg "$bin/pg_ctl" -D "$DIR/pgdata" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$DIR/pgdata" -l "$DIR/run/postgres.log" -w \
            -o "-p $PGPORT -k $DIR/run -c listen_addresses=127.0.0.1" start >/dev/null \
            || die "PostgreSQL did not start; see $DIR/run/postgres.log"
    fi
    export PGPASSWORD
    PGPASSWORD=$(cat "$DIR/pgpass")
    if ! "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U vibgan -d postgres -tAc \
            "select 1 from pg_database where datname='mlflow'" | grep -q 1; then
        "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U vibgan mlflow
    fi
    if [[ -f "$DIR/run/mlflow.pid" ]] && kill -0 "$(cat "$DIR/run/mlflow.pid")" 2>/dev/null; then
        echo "mlflow server already running (pid $(cat "$DIR/run/mlflow.pid"))"
    else
        nohup "$PY" -m mlflow server --backend-store-uri "$(pg_uri)" --artifacts-destination "$DIR/artifacts" \
            --host "$HOST" --port "$PORT" --workers "$WORKERS" > "$DIR/run/mlflow.log" 2>&1 &
        echo $! > "$DIR/run/mlflow.pid"
        for _ in $(seq 1 120); do
            healthy && break
            kill -0 "$(cat "$DIR/run/mlflow.pid")" 2>/dev/null || die "mlflow server exited; see $DIR/run/mlflow.log"
            sleep 1
        done
        healthy || die "mlflow server did not answer on $HOST:$PORT within 120 s; see $DIR/run/mlflow.log"
    fi
    echo "MLflow server: http://$HOST:$PORT (backend PostgreSQL 127.0.0.1:$PGPORT, artifacts $DIR/artifacts)"
    echo "export MLFLOW_TRACKING_URI=http://$HOST:$PORT"
}

stop() {
    if [[ -f "$DIR/run/mlflow.pid" ]]; then
        local pid
        pid=$(cat "$DIR/run/mlflow.pid")
        if kill -0 "$pid" 2>/dev/null; then
            pkill -TERM -P "$pid" 2>/dev/null || true  # its workers
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        fi
        rm -f "$DIR/run/mlflow.pid"
    fi
    if [[ -f "$DIR/pgdata/PG_VERSION" ]]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$DIR/pgdata" -m fast -w stop >/dev/null 2>&1 || true
    fi
    echo "stopped (data kept in $DIR)"
}

status() {
    if [[ -f "$DIR/run/mlflow.pid" ]] && kill -0 "$(cat "$DIR/run/mlflow.pid")" 2>/dev/null && healthy; then
        echo "mlflow server: running, http://$HOST:$PORT"
    else
        echo "mlflow server: not running"; return 3
    fi
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    uri) pg_uri ;;
    *) die "usage: $0 start|stop|status (settings through VIBGAN_SERVER_DIR, MLFLOW_HOST, MLFLOW_PORT, PG_PORT)" ;;
esac

#!/usr/bin/env bash
# A shared MLflow tracking server as teams run it: PostgreSQL backend store + an artifact root.
#
#   bash pipelines/mlflow_server.sh start     # init (first time) and start PostgreSQL and mlflow server
#   bash pipelines/mlflow_server.sh status
#   bash pipelines/mlflow_server.sh stop
#   bash pipelines/mlflow_server.sh add-user NAME trainer|viewer   # password in VIBGAN_SERVER_DIR/users/NAME.password
#
# Then, on every machine that trains or loads models:
#   export MLFLOW_TRACKING_URI=http://HOST:5000
#   export MLFLOW_TRACKING_USERNAME=NAME MLFLOW_TRACKING_PASSWORD=...   (or ~/.mlflow/credentials)
#   python pipelines/train.py ...      (or --tracking-uri http://HOST:5000)
#
# Access control is MLflow's own basic-auth app: every request needs a user and password. Viewers read
# everything (default_permission READ) and can change nothing of the team's; trainers have EDIT on every
# experiment and registered model (log runs, register versions, move `champion`); the admin manages users
# (pipelines/mlflow_users.py, which add-user calls). The admin password is generated at the first start into
# VIBGAN_SERVER_DIR/admin_password (mode 600) and passed to the server through its environment, never on a
# command line or in a log; users and permissions live in the PostgreSQL database mlflow_auth.
# MLFLOW_AUTH=none starts the server without authentication (only behind a proxy that authenticates).
#
# Settings (environment):
#   VIBGAN_SERVER_DIR  state folder: pgdata/, artifacts/, logs, password (default ./mlflow-server)
#   MLFLOW_HOST        address mlflow listens on (default 127.0.0.1; 0.0.0.0 to serve a team network)
#   MLFLOW_PORT        (default 5000)      PG_PORT     PostgreSQL port (default 5433)
#   MLFLOW_WORKERS     gunicorn/uvicorn workers (default 4)
#   MLFLOW_AUTH        basic (default: users and passwords, MLflow's basic-auth app) | none
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
AUTH=${MLFLOW_AUTH:-basic}
[[ "$AUTH" == basic || "$AUTH" == none ]] || { echo "mlflow_server.sh: MLFLOW_AUTH=$AUTH: expected basic or none" >&2; exit 1; }
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

pg_uri() { echo "postgresql+psycopg2://vibgan:$(cat "$DIR/pgpass")@127.0.0.1:$PGPORT/${1:-mlflow}"; }

# a new random secret in file $1 (mode 600), kept when it exists
secret_file() {
    [[ -s "$1" ]] && return 0
    (umask 077; "$PY" -c "import secrets; print(secrets.token_urlsafe(24))" > "$1")
}

# basic-auth: the admin password, the CSRF key, and the auth app's config (its database URI holds the
# PostgreSQL password, so the file is mode 600 too)
auth_setup() {
    secret_file "$DIR/admin_password"
    secret_file "$DIR/secret_key"
    (umask 077; cat > "$DIR/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = $(pg_uri mlflow_auth)
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
    )
}

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
    local db
    for db in mlflow mlflow_auth; do
        if ! "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U vibgan -d postgres -tAc \
                "select 1 from pg_database where datname='$db'" | grep -q 1; then
            "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U vibgan "$db"
        fi
    done
    local app=()
    if [[ "$AUTH" == basic ]]; then
        "$PY" -c "import flask_wtf" 2>/dev/null \
            || die "$PY lacks Flask-WTF, which MLflow's basic-auth app needs: pip install -e '.[server]'"
        auth_setup
        app=(--app-name basic-auth)
    fi
    if [[ -f "$DIR/run/mlflow.pid" ]] && kill -0 "$(cat "$DIR/run/mlflow.pid")" 2>/dev/null; then
        echo "mlflow server already running (pid $(cat "$DIR/run/mlflow.pid"))"
    else
        # the secrets reach the server through its environment only (not its command line, not the log)
        MLFLOW_AUTH_CONFIG_PATH="$DIR/basic_auth.ini" \
        MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat "$DIR/secret_key" 2>/dev/null || true)" \
        MLFLOW_AUTH_ADMIN_PASSWORD="$(cat "$DIR/admin_password" 2>/dev/null || true)" \
        nohup "$PY" -m mlflow server "${app[@]}" --backend-store-uri "$(pg_uri)" --artifacts-destination "$DIR/artifacts" \
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
    if [[ "$AUTH" == basic ]]; then
        echo "authentication: on (user admin, password in $DIR/admin_password); add users with"
        echo "  bash $0 add-user NAME trainer|viewer"
    else
        echo "authentication: OFF (MLFLOW_AUTH=none): anyone who reaches $HOST:$PORT can change the registry"
    fi
}

add_user() {
    [[ $# -eq 2 ]] || die "usage: $0 add-user NAME trainer|viewer"
    [[ "$AUTH" == basic ]] || die "the server runs without authentication (MLFLOW_AUTH=none): no users to add"
    local host=$HOST
    [[ "$host" == 0.0.0.0 ]] && host=127.0.0.1
    VIBGAN_SERVER_DIR="$DIR" "$PY" "$ROOT/pipelines/mlflow_users.py" --uri "http://$host:$PORT" \
        --admin-password-file "$DIR/admin_password" add "$1" --role "$2"
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
    add-user) shift; add_user "$@" ;;
    *) die "usage: $0 start|stop|status|add-user NAME ROLE (settings through VIBGAN_SERVER_DIR, MLFLOW_HOST, MLFLOW_PORT, PG_PORT, MLFLOW_AUTH)" ;;
esac

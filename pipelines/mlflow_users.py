#!/usr/bin/env python
"""Users of a vibgan MLflow server started with authentication (``pipelines/mlflow_server.sh``).

    python pipelines/mlflow_users.py add NAME --role trainer|viewer   # prints where the password is
    python pipelines/mlflow_users.py role NAME trainer|viewer
    python pipelines/mlflow_users.py password NAME                     # a new password
    python pipelines/mlflow_users.py remove NAME

Roles, on top of MLflow's basic-auth app (whose ``default_permission`` the server script sets to READ):
- viewer: reads every experiment, run and registered model (loads generators, browses runs); cannot log
  to the team's experiments, register versions or move aliases (``champion``, ``candidate``);
- trainer: EDIT on every experiment and registered model: training jobs log runs, register versions and
  set aliases.

The admin's credentials come from ``--admin-password-file`` (default ``$VIBGAN_SERVER_DIR/admin_password``,
written by the server script at set-up, mode 600). A new password is written to
``$VIBGAN_SERVER_DIR/users/NAME.password`` (mode 600) and never printed: hand it over, and the user sets
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (or ``~/.mlflow/credentials``).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

ROLES = {"viewer": None, "trainer": "EDIT"}  # the permission granted on every experiment and registered model
RESOURCES = ("experiment", "registered_model")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def server_dir() -> Path:
    return Path(os.environ.get("VIBGAN_SERVER_DIR") or Path.cwd() / "mlflow-server").resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Settings: VIBGAN_SERVER_DIR (the server's state folder), MLFLOW_HOST, MLFLOW_PORT.")
    p.add_argument("--uri", default=None, help="the server (default http://MLFLOW_HOST:MLFLOW_PORT, 127.0.0.1:5000)")
    p.add_argument("--admin-password-file", default=None, help="default: $VIBGAN_SERVER_DIR/admin_password")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="create a user with a generated password")
    a.add_argument("name")
    a.add_argument("--role", choices=sorted(ROLES), required=True)
    r = sub.add_parser("role", help="change a user's role")
    r.add_argument("name")
    r.add_argument("role", choices=sorted(ROLES))
    pw = sub.add_parser("password", help="give a user a new generated password")
    pw.add_argument("name")
    rm = sub.add_parser("remove", help="delete a user")
    rm.add_argument("name")
    return p.parse_args(argv)


def server_uri(arg: str | None) -> str:
    if arg:
        return arg.rstrip("/")
    host = os.environ.get("MLFLOW_HOST", "127.0.0.1")
    host = "127.0.0.1" if host == "0.0.0.0" else host
    return f"http://{host}:{os.environ.get('MLFLOW_PORT', '5000')}"


def write_secret(path: Path, text: str) -> None:
    """``text`` to ``path``, readable by its owner only, replacing an earlier file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def set_role(client, name: str, role: str) -> None:
    """Grant ``role``'s permission on every experiment and registered model (what was granted before goes first:
    MLflow keeps one grant per user and resource and refuses a second)."""
    perm = ROLES[role]
    for resource in RESOURCES:
        try:
            client.revoke_user_permission(name, resource, "*")
        except Exception as e:  # nothing granted yet
            if getattr(e, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
        if perm is not None:
            client.grant_user_permission(name, resource, "*", perm)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not NAME_RE.match(args.name):
        print(f"mlflow_users.py: user name {args.name!r}: expected 1-64 letters, digits and . _ @ -, starting "
              "with a letter or digit", file=sys.stderr)
        return 2
    pw_file = Path(args.admin_password_file) if args.admin_password_file else server_dir() / "admin_password"
    try:
        admin_pw = pw_file.read_text(encoding="utf-8").strip()
    except OSError as e:
        print(f"mlflow_users.py: admin password file {pw_file}: {e.strerror or e} (start the server once with "
              "pipelines/mlflow_server.sh start, or pass --admin-password-file)", file=sys.stderr)
        return 2
    uri = server_uri(args.uri)
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("VIBGAN_ADMIN_USER", "admin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = admin_pw
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(uri)
    secret = server_dir() / "users" / f"{args.name}.password"
    try:
        if args.cmd == "add":
            password = secrets.token_urlsafe(18)
            client.create_user(args.name, password)
            write_secret(secret, password)
            set_role(client, args.name, args.role)
            print(f"user {args.name!r} ({args.role}) created on {uri}; password in {secret} (mode 600)")
        elif args.cmd == "role":
            set_role(client, args.name, args.role)
            print(f"user {args.name!r} is now a {args.role}")
        elif args.cmd == "password":
            password = secrets.token_urlsafe(18)
            client.update_user_password(args.name, password)
            write_secret(secret, password)
            print(f"user {args.name!r}: new password in {secret} (mode 600)")
        else:
            client.delete_user(args.name)
            secret.unlink(missing_ok=True)
            print(f"user {args.name!r} removed")
    except MlflowException as e:
        first = (str(e.message).splitlines() or [""])[0][:300]
        print(f"mlflow_users.py {args.cmd} {args.name}: the server {uri} refused ({e.error_code}): {first}",
              file=sys.stderr)
        return 1
    except Exception as e:  # connection refused and the like
        print(f"mlflow_users.py {args.cmd} {args.name}: the server {uri} cannot be reached ({type(e).__name__}: "
              f"{str(e)[:200]}); is it running (pipelines/mlflow_server.sh status)?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

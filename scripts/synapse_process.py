"""A real Synapse process with the module, for the demo and the end-to-end tests.

Standard library only (plus Synapse itself in the same interpreter): it writes a
``homeserver.yaml`` into a work folder, starts ``python -m synapse.app.homeserver``
in its own process group, waits for ``/_matrix/client/versions``, registers users
through the shared-secret admin API, and stops the whole process group.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

MODULE = "synapse_breakout.BreakoutModule"

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log_file}
    filters: [context]
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
loggers:
  synapse.storage.SQL:
    level: WARNING
  synapse_breakout:
    level: DEBUG
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on TCP ``port`` (Linux's /proc/net)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def _process_of(inodes: set[str]) -> str | None:
    """ "pid N (command)" of a process with one of the sockets ``inodes`` open,
    among those this user may look into."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir()):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        text = command.decode(errors="replace").strip()
        return f"pid {proc.name} ({text[:100]}{'...' if len(text) > 100 else ''})"
    return None


def _terminate_with(parent: int) -> None:
    """In the child before it runs Synapse: SIGTERM when ``parent`` dies
    (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the line above
            os._exit(1)


def port_holder(port: int) -> str | None:
    """None when a server may listen on 127.0.0.1:``port``; otherwise what
    holds it: "pid N (command)", or "another process" when that cannot be
    seen (another user's, or not Linux)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
        try:
            s.bind(("127.0.0.1", port))
            return None
        except OSError:
            pass
    return _process_of(_listening_inodes(port)) or "another process"


def postgres_database(name: str, cp_max: int = 5) -> dict[str, Any]:
    """A fresh PostgreSQL database ``name`` (dropped first if it exists) for one
    Synapse process, on the server ``SYNAPSE_POSTGRES_HOST``, ``_PORT``,
    ``_USER`` and ``_PASSWORD`` name; its ``database`` configuration."""
    import psycopg2

    args = {
        "user": os.environ.get("SYNAPSE_POSTGRES_USER"),
        "password": os.environ.get("SYNAPSE_POSTGRES_PASSWORD"),
        "host": os.environ.get("SYNAPSE_POSTGRES_HOST"),
        "port": int(os.environ.get("SYNAPSE_POSTGRES_PORT", "5432")),
    }
    conn = psycopg2.connect(dbname="postgres", **args)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(
            f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' "
            "template=template0"
        )
    conn.close()
    return {
        "name": "psycopg2",
        "args": {"database": name, "cp_min": 1, "cp_max": cp_max, **args},
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class SynapseProcess:
    """One Synapse homeserver process in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        port: int = 8008,
        module_config: dict[str, Any] | None = None,
        database: dict[str, Any] | None = None,
        server_name: str = "localhost",
        extra_config: dict[str, Any] | None = None,
        rate_limits: bool = False,
        die_with_parent: bool = False,
        metrics_port: int | None = None,
    ):
        """``rate_limits``: keep Synapse's default rate limits (except for
        registration); by default they are lifted, as suits a demo.
        ``die_with_parent``: on Linux, Synapse gets SIGTERM when the process
        that started it dies, however it dies (the demo: even SIGKILL leaves
        no server behind). ``metrics_port``: serve Synapse's metrics there
        (:meth:`metrics`)."""
        self.die_with_parent = die_with_parent
        self.workdir = workdir.resolve()
        self.port = port
        self.server_name = server_name
        self.base_url = f"http://127.0.0.1:{port}"
        self.config_path = self.workdir / "homeserver.yaml"
        self.log_path = self.workdir / "homeserver.log"
        self.pid_path = self.workdir / "homeserver.pid"
        self.shared_secret = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        #: The password of each user ``register`` made, by user ID.
        self.passwords: dict[str, str] = {}
        self._module_config = module_config or {}
        self._database = database or {
            "name": "sqlite3",
            "args": {"database": str(self.workdir / "homeserver.db")},
        }
        self._extra = extra_config or {}
        self._rate_limits = rate_limits
        self.metrics_port = metrics_port
        #: Extra environment variables of the process (PYTHONPATH, say).
        self.env: dict[str, str] = {}

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log.config").write_text(
            LOG_CONFIG.format(log_file=self.log_path)
        )
        unlimited = {"per_second": 10000, "burst_count": 100000}
        config: dict[str, Any] = {
            "server_name": self.server_name,
            # Where clients reach it: links the module sends (the console
            # widget's address) point here, not at https://SERVER_NAME/.
            "public_baseurl": self.base_url + "/",
            "pid_file": str(self.pid_path),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": self._database,
            "log_config": str(self.workdir / "log.config"),
            "media_store_path": str(self.workdir / "media"),
            "signing_key_path": str(self.workdir / "signing.key"),
            "registration_shared_secret": self.shared_secret,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": False,
            "rc_registration": unlimited,
            "rc_login": {"address": unlimited, "account": unlimited},
            "modules": [{"module": MODULE, "config": self._module_config}],
        }
        if self.metrics_port is not None:
            config["enable_metrics"] = True
            config["listeners"].append(
                {
                    "port": self.metrics_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "metrics",
                }
            )
        if not self._rate_limits:
            config["rc_message"] = unlimited
            config["rc_joins"] = {"local": unlimited, "remote": unlimited}
            config["rc_invites"] = {"per_room": unlimited, "per_user": unlimited}
            config["rc_admin_redaction"] = unlimited
        config.update(self._extra)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        """The command line that runs this process."""
        return [
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(self.config_path),
        ]

    def start(self, timeout: float = 90.0) -> None:
        """Start Synapse (writing its config first) and wait until it answers."""
        if not self.config_path.exists():
            self.write_config()
        if not (self.workdir / "signing.key").exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "synapse.app.homeserver",
                    "-c",
                    str(self.config_path),
                    "--generate-keys",
                ],
                check=True,
                capture_output=True,
                env={**os.environ, **self.env},
                cwd=self.workdir,
            )
        out = open(self.log_path.with_suffix(".stdout.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(
                functools.partial(_terminate_with, os.getpid())
                if self.die_with_parent
                else None
            ),
            env={**os.environ, **self.env},
            # Not the caller's folder: Python puts the working folder first on
            # sys.path, and a checkout there would shadow the module's code.
            cwd=self.workdir,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Synapse exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                self.request("GET", "/_matrix/client/versions")
                return
            except (OSError, HttpError):
                time.sleep(0.2)
        raise TimeoutError(f"Synapse did not answer within {timeout}s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to Synapse's whole process group and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """Stop Synapse gracefully (SIGTERM), or by SIGKILL after 30 seconds."""
        self.kill(signal.SIGTERM)

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Make a JSON request; returns the decoded body or raises HttpError."""
        return self.call(method, path, token, body, timeout, headers)[1]

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Make a JSON request; returns the status and the decoded body, or
        raises HttpError (4xx and 5xx)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise HttpError(e.code, parsed) from None

    def metrics(self) -> str:
        """Synapse's metrics, in Prometheus's text format (``metrics_port``)."""
        url = f"http://127.0.0.1:{self.metrics_port}/_synapse/metrics"
        with urllib.request.urlopen(url, timeout=60) as resp:
            return str(resp.read().decode())

    def register(
        self, localpart: str, admin: bool = False, password: str | None = None
    ) -> tuple[str, str]:
        """Register a user through the shared-secret admin API: (user_id, token).

        ``password``: the one to sign in with elsewhere; a random one if None.
        """
        path = "/_synapse/admin/v1/register"
        nonce = self.request("GET", path)["nonce"]
        password = password or secrets.token_hex(8)
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        result = self.request(
            "POST",
            path,
            body={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        self.passwords[result["user_id"]] = password
        return result["user_id"], result["access_token"]

    def create_room(self, token: str, **body: Any) -> str:
        return str(
            self.request("POST", "/_matrix/client/v3/createRoom", token, body)[
                "room_id"
            ]
        )

    def join(self, token: str, room_id: str) -> None:
        quoted = urllib.parse.quote(room_id)
        self.request("POST", f"/_matrix/client/v3/join/{quoted}", token, {})

    def grant(self, token: str, room_id: str, user_id: str, level: int) -> None:
        """Give ``user_id`` ``level`` in the room's power levels, keeping the rest.

        Read and rewritten rather than set at creation, because whether the
        creator must (room versions up to 11) or must not (12) be listed in
        ``users`` depends on the server's default room version.
        """
        quoted = urllib.parse.quote(room_id)
        path = f"/_matrix/client/v3/rooms/{quoted}/state/m.room.power_levels"
        levels = self.request("GET", path, token)
        levels.setdefault("users", {})[user_id] = level
        self.request("PUT", path, token, levels)


class WorkerProcess(SynapseProcess):
    """A generic worker beside ``main``, sharing its ``homeserver.yaml``.

    ``main`` must be configured for workers (Redis, a replication listener and
    ``instance_map``): see docs/operations.md.
    """

    def __init__(self, main: SynapseProcess, name: str, port: int):
        super().__init__(main.workdir, port=port, server_name=main.server_name)
        self.main = main
        self.name = name
        self.shared_secret = main.shared_secret
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.pid_path = self.workdir / f"{name}.pid"

    def write_config(self) -> None:
        log_config = self.workdir / f"{self.name}.log.config"
        log_config.write_text(LOG_CONFIG.format(log_file=self.log_path))
        config = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": self.name,
            "worker_listeners": [
                {
                    "type": "http",
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "worker_log_config": str(log_config),
            "worker_pid_file": str(self.pid_path),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "synapse.app.generic_worker",
            "-c",
            str(self.main.config_path),
            "-c",
            str(self.config_path),
        ]

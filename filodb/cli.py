"""The ``filodb`` command.

Exit codes: 0 success, 2 bad input (usage errors, 4xx answers, bad config), 1 the server or a
needed component is unreachable or failed (5xx).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from filodb import numbalink
from filodb.config import load_config
from filodb.errors import BadInputError, FiloError, NotFoundError
from filodb.model.dataset import check_dataset_name
from filodb.model.limits import DEFAULTS_FROM as LIMIT_KEYS
from filodb.model.limits import DatasetLimits
from filodb.procmem import freeze_long_lived, start_trimmer


class _Console:
    """rich's console, made at its first use: the long-running commands (worker, web,
    gateway, up) print plain lines and do not carry rich's modules (~2 MB a process)."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    def get(self) -> Any:
        """The rich console itself."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def escape(text: str) -> str:
    """``text`` with rich's markup escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def Table(*args: Any, **kw: Any) -> Any:  # noqa: N802 - rich's class, imported when used
    from rich.table import Table as RichTable

    return RichTable(*args, **kw)


console = _Console()
err_console = _Console(stderr=True)

_OPTS = {
    "host": click.option("--host", default=None, help="web server address (default 127.0.0.1)"),
    "port": click.option("--port", type=int, default=None, help="web server port (default 8080)"),
    "redis_url": click.option("--redis-url", default=None, help="Redis URL (default: start one)"),
    "config": click.option("--config", "config_path", default=None, help="TOML config file"),
    "auth_file": click.option(
        "--auth-file", default=None, help="TOML file of tokens with scopes per dataset"
    ),
    "influx_port": click.option(
        "--influx-port", type=int, default=None,
        help="Influx line protocol TCP port (default 8007; 0: off)",
    ),
    "graphite_port": click.option(
        "--graphite-port", type=int, default=None,
        help="Graphite plaintext TCP port (default 2003; 0: off)",
    ),
    "max_exemplars": click.option(
        "--max-exemplars", type=int, default=None,
        help="exemplars kept in memory per dataset, split across its shards (default 100000; 0: none)",
    ),
    "rules": click.option(
        "--rules", "rule_files", multiple=True, default=None,
        help="Prometheus rule files to evaluate (a glob; repeatable)",
    ),
    "alertmanager_url": click.option(
        "--alertmanager-url", "alertmanager_urls", multiple=True, default=None,
        help="Alertmanager to send alerts to (base URL; repeatable)",
    ),
    "web_threads": click.option(
        "--web-threads", type=click.IntRange(min=1), default=None,
        help="threads of the web server answering requests (default 16)",
    ),
    "web_connections": click.option(
        "--web-connections", type=click.IntRange(min=1), default=None,
        help="open HTTP connections a web process serves at once, idle keep-alive ones "
        "included (a thread each; more wait in the listen backlog; default 1000)",
    ),
    "web_processes": click.option(
        "--web-processes", type=click.IntRange(min=1), default=None,
        help="web server processes sharing the port (default 1)",
    ),
    "worker_threads": click.option(
        "--worker-threads", type=click.IntRange(min=1), default=None,
        help="threads of a worker node evaluating leaf requests (default 4)",
    ),
    "leaf_listen": click.option(
        "--leaf-listen", default=None,
        help="host:port a worker node takes the web tier's direct leaf connections on "
        "(default 127.0.0.1:0, a free port; empty: leaf requests through Redis only)",
    ),
    "gateway_metrics_port": click.option(
        "--gateway-metrics-port", type=int, default=None,
        help="port of the gateway's /metrics (default 0: a free port; -1: off)",
    ),
}  # fmt: skip


def _limit_defaults(fn: Any) -> Any:
    """The flags of the defaults of the limits per dataset (config keys of the same names)."""
    for name, typ, what in (
        ("dataset-max-series", int, "series of a dataset"),
        ("dataset-max-series-per-metric", int, "series of one metric name in a dataset"),
        ("ingest-samples-per-s", float, "samples a dataset takes per second (429 beyond)"),
        ("max-query-concurrency", int, "queries of a dataset at once (wait, then 503)"),
    ):
        fn = click.option(f"--{name}", type=typ, default=None,
                          help=f"default limit: {what} (0: none)")(fn)  # fmt: skip
    return fn


def _rules_settings(fn: Any) -> Any:
    """The rule evaluator's flags (config keys of the same names)."""
    for name, typ, what in (
        ("rules-for-grace-period", float, "seconds: least time an alert restored from "
         "ALERTS_FOR_STATE waits before firing (default 600)"),
        ("rules-for-outage-tolerance", float, "seconds of outage within which alerts' for state "
         "is restored from ALERTS_FOR_STATE (default 3600)"),
        ("rules-metrics-port", int, "the rule evaluator's /metrics port (default 0: a free "
         "port; -1: off)"),
    ):  # fmt: skip
        fn = click.option(f"--{name}", type=typ, default=None, help=what)(fn)
    return fn


def _cfg(config_path: str | None, **flags: Any):
    flags = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in flags.items()
        if not (isinstance(v, tuple) and not v)
    }  # an unused repeatable option: not given
    try:
        return load_config(config_path, flags)
    except BadInputError as e:
        _fail(str(e), 2)


def _check_auth(cfg: Any, role: str) -> Any:
    """Read the auth file now (exit 2 when it is bad; children get its absolute path) and warn
    when a server listens beyond loopback without one."""
    from filodb.auth import load_auth_file, with_admin_token

    if cfg.auth_file:
        try:
            policy = with_admin_token(load_auth_file(cfg.auth_file), cfg.admin_token)
            if role != "web":
                policy.door_tokens(cfg.dataset)
        except BadInputError as e:
            _fail(str(e), 2)
        return cfg.replace(auth_file=str(Path(cfg.auth_file).resolve()))
    if not _loopback(cfg.host):
        err_console.print(f"[yellow]warning:[/yellow] {role} listens on {cfg.host} without an "
                          "auth file: anyone who reaches it can read and write every dataset "
                          "(pass --auth-file, see docs/operations.md)", highlight=False)  # fmt: skip
    return cfg


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(msg: str, code: int) -> None:
    err_console.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    sys.exit(code)


@click.group()
def main() -> None:
    """FiloDB in Python: a distributed, Prometheus-compatible time-series database."""


@main.command()
@_OPTS["host"]
@_OPTS["port"]
@_OPTS["redis_url"]
@_OPTS["config"]
@_OPTS["auth_file"]
@click.option("--data-dir", default=None, help="data directory (default ./filodb-data)")
@click.option("--shards", type=int, default=None, help="shards of the default dataset (default 4)")
@click.option("--workers", type=int, default=None, help="worker nodes to start (default 1)")
@_OPTS["web_threads"]
@_OPTS["web_connections"]
@_OPTS["web_processes"]
@click.option("--web-in-worker", is_flag=True, default=None,
              help="serve the web tier from the worker process (less memory, one GIL; "
              "needs --workers 1 and --web-processes 1)")  # fmt: skip
@_OPTS["worker_threads"]
@_OPTS["leaf_listen"]
@_OPTS["influx_port"]
@_OPTS["graphite_port"]
@_OPTS["gateway_metrics_port"]
@_OPTS["max_exemplars"]
@_limit_defaults
@_OPTS["rules"]
@_OPTS["alertmanager_url"]
@_rules_settings
@click.option(
    "--log",
    "log_backend",
    default=None,
    help="ingestion log backend: redis | kafka (FILODB_KAFKA_BOOTSTRAP)",
)
@click.option(
    "--store",
    default=None,
    help="column store backend: sqlite | cassandra (FILODB_CASSANDRA_HOSTS)",
)
@click.option("--ooo-window", type=float, default=None,
              help="seconds: accept samples this much older than their series' newest (default 0)")  # fmt: skip
def up(config_path: str | None, log_backend: str | None, **flags: Any) -> None:
    """Start the embedded default: Redis, a worker owning every shard, the web server."""
    from filodb.supervisor import exec_supervisor

    cfg = _check_auth(_cfg(config_path, log=log_backend, **flags), "filodb up")
    if cfg.ooo_window < 0:
        _fail(f"--ooo-window must be >= 0 seconds, not {cfg.ooo_window}", 2)
    _check_threads(cfg)
    if cfg.web_in_worker and (cfg.workers != 1 or cfg.web_processes != 1):
        _fail("web_in_worker needs workers = 1 and web_processes = 1, not "
              f"{cfg.workers} and {cfg.web_processes}", 2)  # fmt: skip
    if cfg.log not in ("redis", "kafka"):
        _fail(f"unknown log backend {cfg.log!r} (have: redis, kafka)", 2)
    if cfg.store not in ("sqlite", "cassandra"):
        _fail(f"unknown column store {cfg.store!r} (have: sqlite, cassandra)", 2)
    if cfg.log == "kafka" and not cfg.kafka_bootstrap:
        _fail('--log kafka needs FILODB_KAFKA_BOOTSTRAP (eval "$(scripts/services up kafka)")', 2)
    if cfg.store == "cassandra" and not cfg.cassandra_hosts:
        _fail("--store cassandra needs FILODB_CASSANDRA_HOSTS "
              "(eval \"$(scripts/services up cassandra)\")", 2)  # fmt: skip
    if cfg.rule_files:
        from filodb.rules.files import load_files

        try:  # refuse bad rule files now, with the reason, rather than in a child's log
            load_files(cfg.rule_files)
        except BadInputError as e:
            _fail(str(e), 2)
    try:
        from filodb.model.resolution import check_levels, parse_levels

        check_levels(parse_levels(cfg.downsample), cfg.retention)  # before anything starts
    except BadInputError as e:
        _fail(f"downsample: {e}", 2)
    from filodb.numbacache import is_cold

    if is_cold():
        _say("First start of this version: kernels compile as they are first used, so the first "
             "writes and queries are slow for a minute or two ('filodb warm' compiles them ahead).")  # fmt: skip
    exec_supervisor(cfg)  # the same pid, without this module's imports (filodb.supervisor)


def _check_threads(cfg: Any) -> None:
    """Exit 2 unless ``web_threads``, ``web_connections``, ``web_processes`` and
    ``worker_threads`` (flags, env, TOML) are >= 1 and ``leaf_listen`` is empty or
    ``host:port``."""
    for key in ("web_threads", "web_connections", "web_processes", "worker_threads"):
        if getattr(cfg, key) < 1:
            _fail(f"{key} must be at least 1, not {getattr(cfg, key)}", 2)
    if cfg.leaf_listen:
        from filodb.tasks.direct import parse_addr

        try:
            parse_addr(cfg.leaf_listen)
        except BadInputError as e:
            _fail(f"leaf_listen: {e}", 2)


def _say(msg: str) -> None:
    click.echo(msg)  # plain: log lines stay whole when piped, and brackets are not markup
    sys.stdout.flush()


@main.command()
@click.option("--node", default=None, help="node name (default node-<pid>)")
@_OPTS["max_exemplars"]
@_OPTS["worker_threads"]
@_OPTS["leaf_listen"]
@_OPTS["redis_url"]
@_OPTS["config"]
@click.option("--listen-fd", "listen_fds", type=int, multiple=True, hidden=True,
              help="also serve the web tier in this process on this inherited listening "
              "socket (filodb up's web_in_worker; repeatable)")  # fmt: skip
def worker(config_path: str | None, listen_fds: tuple[int, ...], **flags: Any) -> None:
    """Run one worker node (a Celery worker owning the shards the coordinator gives it)."""
    import threading

    numbalink.install()  # before any kernel loads: their linking IR kept as bytes

    from filodb.node.worker import run_worker

    cfg = _cfg(config_path, **flags)
    _check_threads(cfg)
    if not cfg.redis_url:
        _fail("no Redis URL: pass --redis-url or set FILODB_REDIS_URL", 2)
    if listen_fds:  # web_in_worker: one interpreter for every tier (docs/architecture.md)
        server = _web_server(_check_auth(cfg, "web"), listen_fds, None)
        threading.Thread(target=server.run, name="web", daemon=True).start()
        if cfg.influx_port > 0 or cfg.graphite_port > 0:  # filodb up set them: the TCP doors
            _tcp_doors(_check_auth(cfg, "gateway"))  # their threads live as long as we do
    start_trimmer()  # a query's temporaries go back to the system once it is idle
    run_worker(cfg)


@main.command()
@_OPTS["host"]
@_OPTS["port"]
@_OPTS["redis_url"]
@_OPTS["config"]
@_OPTS["auth_file"]
@_OPTS["web_threads"]
@_OPTS["web_connections"]
@_limit_defaults
@click.option(
    "--listen-fd",
    "listen_fds",
    type=int,
    multiple=True,
    hidden=True,
    help="serve on this inherited listening socket instead of binding host:port "
    "(filodb up's web processes share the port this way; repeatable)",
)
@click.option("--shared-dir", type=click.Path(file_okay=False, path_type=Path), hidden=True,
              help="directory shared with the other web processes of a filodb up (query "
              "slots, which serve)")  # fmt: skip
def web(config_path: str | None, listen_fds: tuple[int, ...], shared_dir: Path | None,
        **flags: Any) -> None:  # fmt: skip
    """Run the web server (Prometheus API, ingestion routes, admin API, UI)."""
    numbalink.install()
    cfg = _check_auth(_cfg(config_path, **flags), "web")
    _check_threads(cfg)
    if not cfg.redis_url:
        _fail("no Redis URL: pass --redis-url or set FILODB_REDIS_URL", 2)
    server = _web_server(cfg, listen_fds, shared_dir)
    start_trimmer()
    freeze_long_lived()  # the app, its imports and warmed kernels: out of the full collections
    server.run()


def _web_server(cfg: Any, listen_fds: tuple[int, ...], shared_dir: Path | None) -> Any:
    """The web tier's HTTP server (not yet running) on ``listen_fds`` or host:port."""
    import os

    from filodb.tasks.scheduler import SWITCH_INTERVAL_S
    from filodb.web import create_app
    from filodb.web.ingest_wsgi import loop_route
    from filodb.web.processes import mark_serving
    from filodb.web.wsgi_server import SHARED_PORT_MAX_REQUESTS, inherited_sockets, make_server

    # filodb up's web processes count into one directory (prometheus_client reads it at import)
    app = create_app(cfg, metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
                     shared_dir=shared_dir)  # fmt: skip
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if listen_fds:
        sockets = inherited_sockets(list(listen_fds))
    else:
        from filodb.listen import bind

        sockets = bind(cfg.host, cfg.port)
    shared = bool(listen_fds and shared_dir)  # connections move between processes
    lean = getattr(app, "wsgi_app", None)  # the ingestion routes' app (web.ingest_wsgi)
    server = make_server(app, SHARED_PORT_MAX_REQUESTS if shared else 0, sockets=sockets,
                         threads=cfg.web_threads, connection_limit=cfg.web_connections,
                         ident="filodb", channel_timeout=300,
                         max_body_bytes=cfg.max_body_bytes,
                         loop_route=loop_route if cfg.web_ingest_loop else None,
                         loop_steps=getattr(lean, "steps", None),
                         loop_send=getattr(lean, "send_appends", None))  # fmt: skip
    if shared_dir is not None:
        mark_serving(shared_dir)
    return server


@main.command()
@click.option("--host", default=None, help="address the TCP doors listen on (default 127.0.0.1)")
@_OPTS["influx_port"]
@_OPTS["graphite_port"]
@_OPTS["gateway_metrics_port"]
@_OPTS["redis_url"]
@_OPTS["config"]
@_OPTS["auth_file"]
@click.option("--listen-fd", "door_fds", multiple=True, hidden=True,
              help="<door>=<fd>: serve that door on this inherited listening socket (filodb up)")  # fmt: skip
def gateway(config_path: str | None, door_fds: tuple[str, ...], **flags: Any) -> None:
    """Run the TCP doors (Influx line protocol, Graphite plaintext) until SIGTERM/Ctrl-C."""
    import logging
    import signal
    import socket
    import threading

    cfg = _check_auth(_cfg(config_path, **flags), "gateway")
    if not cfg.redis_url:
        _fail("no Redis URL: pass --redis-url or set FILODB_REDIS_URL", 2)
    numbalink.install()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sockets = {}
    for spec in door_fds:
        door, _, fd = spec.partition("=")
        if not fd.isdigit():
            _fail(f"--listen-fd {spec!r}: expected <door>=<descriptor>", 2)
        sockets[door] = socket.socket(fileno=int(fd))
    gw, metrics = _tcp_doors(cfg, sockets)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    doors = (
        ", ".join(f"{d} on {cfg.host}:{p}" for d, p in gw.ports.items()) or "no door (all ports 0)"
    )
    where = f"; metrics on http://{cfg.host}:{metrics.port}/metrics" if metrics else ""
    _say(f"FiloDB gateway: {doors}, dataset {cfg.dataset}{where}")
    start_trimmer()  # freed heap pages and LLVM's library pages back to the system
    freeze_long_lived()
    while not stop.wait(1.0):
        pass
    gw.stop()
    if metrics:
        metrics.close()
    _say(f"FiloDB gateway stopped: {gw.stats.snapshot()}")


@main.command(hidden=True)
@click.option("--fd", type=int, required=True, help="the supervisor's end of a socket pair")
def zygote(fd: int) -> None:
    """The warmed parent ``filodb up`` forks its Python children from (filodb.zygote)."""
    from filodb.zygote_process import serve

    req = serve(fd)  # returns in a forked child only: run its command line
    if req is not None:
        main(args=req["args"], prog_name="filodb")


def _tcp_doors(cfg: Any, sockets: dict | None = None) -> tuple[Any, Any]:
    """The TCP doors, listening (on ``sockets`` by door where given), and their /metrics
    server (exit 2 when a port is taken)."""
    from filodb.gateway.metrics import serve as serve_metrics
    from filodb.gateway.tcp import gateway_from_config

    try:
        gw = gateway_from_config(cfg, sockets=sockets).start()
    except OSError as e:
        _fail(f"{e.strerror or e} (is another gateway or filodb up running? pass other ports)", 2)
    except FiloError as e:
        _fail(str(e), 2 if isinstance(e, BadInputError) else 1)
    try:
        metrics = serve_metrics(gw.stats, cfg.dataset, cfg.host, cfg.gateway_metrics_port)
    except OSError as e:
        gw.stop()
        _fail(f"metrics port {cfg.gateway_metrics_port}: {e.strerror or e}", 2)
    return gw, metrics


@main.group(invoke_without_command=True)
@_OPTS["rules"]
@_OPTS["alertmanager_url"]
@_rules_settings
@click.option("--node", default=None, help="this evaluator's name (default host-pid)")
@_OPTS["redis_url"]
@_OPTS["config"]
@click.pass_context
def rules(ctx: click.Context, config_path: str | None, **flags: Any) -> None:
    """Evaluate recording and alerting rules against the cluster (one evaluator at a time holds
    the rules lease; start several for failover). Subcommands: test, check."""
    if ctx.invoked_subcommand is not None:
        return
    from filodb.rules.process import run

    cfg = _cfg(config_path, **flags)
    if not cfg.redis_url:
        _fail("no Redis URL: pass --redis-url or set FILODB_REDIS_URL", 2)
    if not cfg.rule_files:
        _fail("no rule files: pass --rules 'rules/*.yml' or set rule_files", 2)
    try:
        sys.exit(run(cfg, echo=_say))
    except FiloError as e:
        _fail(str(e), 2 if isinstance(e, BadInputError) else 1)


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def rules_test(files: tuple[str, ...]) -> None:
    """Run rule unit tests in promtool's `test rules` format (exit 0: all pass, 1: a failure)."""
    from filodb.rules.promtool_tests import main as run_tests

    sys.exit(run_tests(files, sys.stdout))


@rules.command("check")
@click.argument("files", nargs=-1, required=True)
def rules_check(files: tuple[str, ...]) -> None:
    """Check rule files (exit 0: all valid, 2: a file is refused, with the reason)."""
    from filodb.rules.files import load_files

    try:
        groups = load_files(files)
    except BadInputError as e:
        _fail(str(e), 2)
    _say(f"SUCCESS: {len(groups)} groups, {sum(len(g.rules) for g in groups)} rules")


# --- client commands ------------------------------------------------------------------------
_url_opt = click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="web URL")
_ds_opt = click.option("--dataset", default="prometheus", show_default=True)
_token_opt = click.option(
    "--token",
    default=None,
    envvar=["FILODB_TOKEN", "FILODB_ADMIN_TOKEN"],
    help="token sent as 'Authorization: Bearer' (env FILODB_TOKEN)",
)
_REL = re.compile(r"^(now)?([+-])(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time_arg(v: str | None) -> str | None:
    """``now``, ``now-1h``/``-1h`` (relative), or anything the API accepts (unix s, RFC 3339)."""
    if v is None:
        return None
    if v == "now":
        return f"{time.time():.3f}"
    m = _REL.match(v)
    if m:
        sign = -1 if m.group(2) == "-" else 1
        return f"{time.time() + sign * int(m.group(3)) * _UNIT_S[m.group(4)]:.3f}"
    return v


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _request(method: str, url: str, token: str | None = None, **kw: Any) -> dict:
    import requests  # here: filodb up's supervisor never loads it (10 MB)

    kw["headers"] = {**kw.get("headers", {}), **_auth(token)}
    try:
        r = requests.request(method, url, timeout=kw.pop("timeout", 60), **kw)
    except requests.RequestException as e:
        _fail(f"cannot reach {url}: {e}", 1)
    try:
        body = r.json()
    except ValueError:
        _fail(f"{r.status_code} from {url}: {r.text[:200]}", 1 if r.status_code >= 500 else 2)
    if r.status_code >= 400 or body.get("status") == "error":
        _fail(body.get("error", r.text[:200]), 2 if r.status_code < 500 else 1)
    return body


def _series_name(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in metric.items() if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


@main.command()
@click.argument("expr")
@_url_opt
@_ds_opt
@click.option("--time", "at", default=None, help="evaluation time (unix s, RFC 3339, now, -5m)")
@click.option("--start", default=None, help="range start (makes a range query)")
@click.option("--end", default=None, help="range end (default now)")
@click.option("--step", default=None, help="range step (e.g. 15s; default range/250)")
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON answer")
@_token_opt
def query(expr: str, url: str, dataset: str, at: str | None, start: str | None,
          end: str | None, step: str | None, as_json: bool, token: str | None) -> None:  # fmt: skip
    """Run a PromQL query and print the result as a table."""
    base = f"{url.rstrip('/')}/promql/{dataset}/api/v1"
    if start is not None:
        s, e = _time_arg(start), _time_arg(end or "now")
        if step is None:
            try:
                step = f"{max(1.0, (float(e) - float(s)) / 250):.3f}"  # type: ignore[arg-type]
            except ValueError:
                _fail("--step is needed when --start/--end are not unix seconds", 2)
        body = _request("POST", f"{base}/query_range", token,
                        data={"query": expr, "start": s, "end": e, "step": step})  # fmt: skip
    else:
        if end is not None or step is not None:
            _fail("--end and --step need --start", 2)
        params = {"query": expr}
        if at is not None:
            params["time"] = _time_arg(at)  # type: ignore[assignment]
        body = _request("POST", f"{base}/query", token, data=params)
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    for w in body.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    for i in body.get("infos", []):  # e.g. which resolution answered (downsampled datasets)
        err_console.print(f"[dim]info: {escape(i)}[/dim]", highlight=False)
    _print_result(body["data"])


def _print_result(data: dict) -> None:
    rtype, result = data["resultType"], data["result"]
    if rtype in ("scalar", "string"):
        t = Table("time", "value")
        t.add_row(str(result[0]), str(result[1]))
    elif rtype == "vector":
        t = Table("series", "time", "value")
        for item in result:
            t.add_row(_series_name(item["metric"]), str(item["value"][0]), item["value"][1])
    else:
        t = Table("series", "time", "value")
        for item in result:
            name = _series_name(item["metric"])
            for ts, v in item["values"]:
                t.add_row(name, str(ts), v)
                name = ""
    console.print(t)
    if rtype in ("vector", "matrix"):
        console.print(f"{len(result)} series", style="dim")


@main.command()
@_url_opt
@_ds_opt
@click.option("--follow", "-f", is_flag=True, help="then print shard events as they happen")
@click.option("--by-node", is_flag=True, help="group shards by the node that owns them")
@_token_opt
def status(url: str, dataset: str, follow: bool, by_node: bool, token: str | None) -> None:
    """Show the shard table of a dataset (and follow shard events)."""
    if by_node:
        body = _request("GET", f"{url.rstrip('/')}/api/v1/cluster/{dataset}/statusByAddress", token)
        t = Table("node", "alive", "shards", "statuses")
        for row in body["data"]:
            sts: dict[str, int] = {}
            for sh in row["shards"]:
                sts[sh["status"]] = sts.get(sh["status"], 0) + 1
            t.add_row(row["address"] or "(none)", "yes" if row["alive"] else "no",
                      " ".join(str(sh["shard"]) for sh in row["shards"]),
                      ", ".join(f"{n} {k}" for k, n in sorted(sts.items())))  # fmt: skip
        console.print(t)
    else:
        body = _request("GET", f"{url.rstrip('/')}/api/v1/cluster/{dataset}/status", token)
        t = Table("shard", "node", "status", "ingested", "log end", "lag", "series")
        for row in body["data"]:
            st = row["status"] + (f" {row['progress']}%" if row["status"] == "Recovery" else "")
            t.add_row(str(row["shard"]), row["node"] or "-", st, str(row["ingested_offset"]),
                      str(row["log_end_offset"]), str(row["lag"]), str(row["series"]))  # fmt: skip
        console.print(t)
        desc = _request("GET", f"{url.rstrip('/')}/api/v1/cluster/{dataset}", token)["data"]
        _print_limits(desc)
        _print_downsample_run(desc)
    if follow:
        _follow(url, token)


_CARD_LISTS = (  # key, title, columns
    ("seriesCountByMetricName", "Series by metric name", "metric", "series"),
    ("labelValueCountByLabelName", "Values by label name", "label", "values"),
    ("memoryInBytesByLabelName", "Bytes of the values by label name", "label", "bytes"),
    ("seriesCountByLabelValuePair", "Series by label pair", "label pair", "series"),
)


@main.command()
@_url_opt
@_ds_opt
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="rows per table")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the raw JSON answer")
@_token_opt
def card(url: str, dataset: str, top: int, as_json: bool, token: str | None) -> None:
    """Show the cardinality of a dataset: series per metric and label pair, values per label
    (Prometheus's /api/v1/status/tsdb)."""
    body = _request("GET", f"{url.rstrip('/')}/promql/{dataset}/api/v1/status/tsdb", token,
                    params={"limit": top})  # fmt: skip
    if as_json:
        print(orjson.dumps(body).decode())
        return
    d = body["data"]
    h = d["headStats"]
    console.print(f"{dataset}: {h['numSeries']} series, {h['numLabelPairs']} label pairs, "
                  f"{h['chunkCount']} chunks", highlight=False)  # fmt: skip
    for w in body.get("warnings", []):
        err_console.print(f"warning: {escape(w)}")
    for key, title, what, count in _CARD_LISTS:
        console.print(f"\n{title}", highlight=False)
        t = Table(what, count)
        for row in d[key]:
            t.add_row(escape(row["name"]), str(row["value"]))
        console.print(t)


def _print_downsample_run(desc: dict) -> None:
    """How far the dataset's downsample levels reach and the cluster's last periodic run."""
    if "downsampled_through" not in desc:
        return
    t = desc["downsampled_through"]
    reach = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "nothing yet"
    console.print(f"downsampled through: {reach}", highlight=False)
    run = desc.get("downsample_run") or {}
    if run.get("state") == "done":
        end = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(run["finished_at"])))
        console.print(f"last downsample run: ended {end} on {run.get('node')}, "
                      f"{float(run.get('seconds', 0)):.1f} s, {run.get('raw_samples')} raw samples -> "
                      f"{run.get('ds_samples')} downsampled, {run.get('errors')} errors"
                      + (f" ({run['error']})" if run.get("error") else ""), highlight=False)  # fmt: skip
    elif run.get("state"):
        console.print(f"downsample run: {run['state']} on {run.get('node')}"
                      + (" (holds the lock)" if run.get("locked") else ""), highlight=False)  # fmt: skip


def _print_limits(desc: dict) -> None:
    """The dataset's limits in effect (0: none) and what the doors refused so far (the limits'
    reasons, and out-of-order samples)."""
    lim = {k: v for k, v in desc.get("effective_limits", {}).items() if v}
    if lim:
        console.print("limits: " + ", ".join(f"{k}={v:g}" for k, v in lim.items()),
                      highlight=False)  # fmt: skip
    refused = desc.get("refused") or {}
    if refused:
        console.print("refused: " + ", ".join(f"{k} {n}" for k, n in sorted(refused.items())),
                      highlight=False)  # fmt: skip


def _follow(url: str, token: str | None) -> None:
    """Print shard events until Ctrl-C; the stream starts with a snapshot of the map and is
    reopened when the server ends it (each stream is bounded so it does not hold a thread)."""
    import requests

    failures = 0
    try:
        while True:
            try:
                with requests.get(f"{url.rstrip('/')}/api/v1/cluster/events", stream=True,
                                  headers=_auth(token), timeout=(5, None)) as r:  # fmt: skip
                    r.raise_for_status()
                    failures = 0
                    for line in r.iter_lines():
                        if line.startswith(b"data: "):
                            _print_event(orjson.loads(line[6:]))
            except requests.RequestException as e:
                failures += 1
                if failures >= 5:
                    _fail(f"event stream from {url} ended: {e}", 1)
                time.sleep(1)
    except KeyboardInterrupt:
        pass


def _print_event(ev: dict) -> None:
    if ev.get("event") == "ShardMapSnapshot":
        counts: dict[str, int] = {}
        for st in ev.get("shards_state", []):
            counts[st["status"]] = counts.get(st["status"], 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        console.print(
            f"snapshot {ev['dataset']}: {ev.get('shards')} shards: {summary}", highlight=False
        )
        return
    ts = time.strftime("%H:%M:%S", time.localtime(ev.get("updated") or time.time()))
    prog = f" {ev['progress']}%" if ev.get("status") == "Recovery" else ""
    console.print(f"{ts} {ev['dataset']}/{ev['shard']} {ev['event']}: "
                  f"{ev['status']}{prog} on {ev.get('node') or '-'}", highlight=False)  # fmt: skip


@main.group()
def dataset() -> None:
    """Create and list datasets."""


@dataset.command("create")
@click.argument("name")
@click.option("--shards", type=int, required=True, help="shard count (a power of two)")
@click.option("--spread", type=int, default=1, show_default=True)
@click.option(
    "--retention", default=None, help="keep data this long, e.g. 30d (default: the nodes')"
)
@click.option(
    "--spread-override",
    "overrides",
    multiple=True,
    metavar="WS,NS=SPREAD",
    help="spread for one _ws_/_ns_ shard key, e.g. demo,App-1=3 (repeatable)",
)
@click.option(
    "--limit", "limits", multiple=True, metavar="KEY=VALUE",
    help="a limit of the dataset, e.g. max_series=100000 (repeatable; keys: "
    + ", ".join(LIMIT_KEYS) + ")",
)  # fmt: skip
@click.option(
    "--downsample",
    default=None,
    metavar="RES:RET,...",
    help="downsampled copies, e.g. 1m:30d,5m:183d (datasets NAME_ds_1, NAME_ds_5)",
)
@_url_opt
@_token_opt
def dataset_create(name: str, shards: int, spread: int, retention: str | None,
                   overrides: tuple[str, ...], limits: tuple[str, ...], downsample: str | None, url: str,
                   token: str | None) -> None:  # fmt: skip
    """Create a dataset with SHARDS shards."""
    from filodb.model.resolution import parse_levels

    try:
        check_dataset_name(name)
        levels = parse_levels(downsample)
    except BadInputError as e:
        _fail(str(e), 2)
    body: dict[str, Any] = {"shards": shards, "spread": spread}
    if retention:
        body["retention"] = retention
    if levels:
        body["downsample"] = [lv.to_json() for lv in levels]
    if overrides:
        body["spread_overrides"] = []
        for o in overrides:
            key, _, sp = o.rpartition("=")
            ws, comma, ns = key.partition(",")
            if not comma or not sp.isdigit():
                _fail(f"bad --spread-override {o!r}: use WS,NS=SPREAD", 2)
            body["spread_overrides"].append({"_ws_": ws, "_ns_": ns, "spread": int(sp)})
    if limits:
        body["limits"] = {}
        for kv in limits:
            key, eq, value = kv.partition("=")
            if not eq or not value:
                _fail(f"bad --limit {kv!r}: use KEY=VALUE", 2)
            body["limits"][key.strip()] = value.strip()
        try:
            DatasetLimits.parse(body["limits"])
        except BadInputError as e:
            _fail(str(e), 2)
    resp = _request("POST", f"{url.rstrip('/')}/api/v1/cluster/{name}", token, json=body)
    d = resp["data"]
    extra = f", retention {d['retention_s']:g} s" if "retention_s" in d else ""
    if d.get("limits"):
        extra += ", limits " + ", ".join(f"{k}={v:g}" for k, v in d["limits"].items())
    if d.get("downsample"):
        extra += ", downsampled to " + ", ".join(
            f"{lv['resolution']} ({name}_ds_{lv['resolution'][:-1]})" for lv in d["downsample"]
        )
    console.print(f"dataset {d['dataset']}: {d['shards']} shards, spread {d['spread']}{extra}")


@main.group()
def shards() -> None:
    """Stop and start shards of a dataset."""


def _shards_action(action: str, dataset: str, shard_ids: tuple[int, ...], url: str,
                   token: str | None) -> None:  # fmt: skip
    body = _request("POST", f"{url.rstrip('/')}/api/v1/cluster/{dataset}/{action}shards", token,
                    json={"shards": list(shard_ids)})  # fmt: skip
    done = body["data"].get("stopped", body["data"].get("started"))
    console.print(f"{dataset}: {action}ped shards {done}" if action == "stop"
                  else f"{dataset}: started shards {done}")  # fmt: skip


@shards.command("stop")
@click.argument("dataset_name")
@click.argument("shard_ids", nargs=-1, type=int, required=True)
@_url_opt
@_token_opt
def shards_stop(dataset_name: str, shard_ids: tuple[int, ...], url: str, token: str | None) -> None:
    """Stop shards (their owner flushes and releases them)."""
    _shards_action("stop", dataset_name, shard_ids, url, token)


@shards.command("start")
@click.argument("dataset_name")
@click.argument("shard_ids", nargs=-1, type=int, required=True)
@_url_opt
@_token_opt
def shards_start(
    dataset_name: str, shard_ids: tuple[int, ...], url: str, token: str | None
) -> None:
    """Start stopped shards (the coordinator assigns them)."""
    _shards_action("start", dataset_name, shard_ids, url, token)


@dataset.command("list")
@_url_opt
@_token_opt
def dataset_list(url: str, token: str | None) -> None:
    """List datasets (those the token may read, when the server has an auth file)."""
    body = _request("GET", f"{url.rstrip('/')}/api/v1/cluster", token)
    t = Table("dataset", "shards", "spread", "resolution")
    for d in body["data"]:
        res = f"{d['resolution_ms'] // 60_000}m" if d.get("resolution_ms") else "raw"
        t.add_row(d["dataset"], str(d["shards"]), str(d["spread"]), res)
    console.print(t)


@main.command()
@_ds_opt
@click.option(
    "--from",
    "from_",
    default=None,
    help="start (unix s, RFC 3339, -7d; default now - raw retention)",
)
@click.option("--to", default="now", show_default=True, help="end: windows ending after it wait")
@click.option(
    "--spark", default=None, metavar="MASTER", help="run on Spark: local[2], spark://host:7077"
)
@_OPTS["redis_url"]
@_OPTS["config"]
def downsample(dataset: str, from_: str | None, to: str, spark: str | None,
               config_path: str | None, **flags: Any) -> None:  # fmt: skip
    """Downsample DATASET's raw chunks into its <dataset>_ds_<min> datasets (idempotent).

    Takes the cluster-wide downsample lock: exits 1 while another run (periodic or by hand)
    holds it."""
    from filodb.model.timeparse import parse_time_ms
    from filodb.node.downsampler import run_by_hand
    from filodb.shards.redis_map import ShardMapStore

    cfg = _cfg(config_path, **flags)
    if not cfg.redis_url:
        _fail("no Redis URL: pass --redis-url or set FILODB_REDIS_URL", 2)
    try:
        shard_map = ShardMapStore(cfg.redis_url)
        end = parse_time_ms(_time_arg(to) or "", "to")
        ret = shard_map.dataset(dataset).retention(cfg.retention) or 0
        start = parse_time_ms(_time_arg(from_) or "", "from") if from_ else end - int(ret * 1000)
        out = run_by_hand(cfg, shard_map, dataset, start, end, _spark_runner(spark))
    except (BadInputError, NotFoundError) as e:
        _fail(str(e), 2)
    except FiloError as e:
        _fail(str(e), 1)
    console.print_json(orjson.dumps(out).decode())


def _spark_runner(master: str | None) -> Any:
    """Spark's task runner bound to ``master`` (None: run in-process)."""
    if not master:
        return None
    try:
        from filodb.spark.runner import run_tasks
    except ImportError as e:
        raise BadInputError(
            f"--spark needs the spark extra: pip install -e '.[spark]' ({e})"
        ) from e
    return functools.partial(run_tasks, master)


# --- data tools (filodb/tools) ---------------------------------------------------------------
@main.command()
@click.option("--series", type=int, default=1000, show_default=True, help="series to write")
@click.option("--samples", type=int, default=240, show_default=True, help="samples per series")
@click.option("--interval", default="15s", show_default=True, help="time between samples")
@click.option("--start", default=None, help="first timestamp (default now - samples*interval)")
@_url_opt
@click.option("--format", "fmt", type=click.Choice(["remote-write", "influx"]), default="remote-write",
              show_default=True)  # fmt: skip
@_ds_opt
@click.option("--batch", type=int, default=20_000, show_default=True, help="samples per request")
@click.option(
    "--out", "out_path", default=None, help="write a file (dump or lines) instead of sending"
)
@click.option("--seed", type=int, default=1, show_default=True)
@_token_opt
def gen(start: str | None, **kw: Any) -> None:
    """Write exporter-shaped test data (gauges, counters, histograms) to a running server."""
    from filodb.tools import commands

    sys.exit(commands.gen(start=_time_arg(start), **kw))


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["auto", "prom", "influx", "remote-write"]),
              default="auto", show_default=True)  # fmt: skip
@_url_opt
@_ds_opt
@click.option("--precision", default="ns", show_default=True, help="Influx timestamp precision")
@_token_opt
def import_(file: str, **kw: Any) -> None:
    """Import a Prometheus/OpenMetrics text, Influx line or remote-write dump file."""
    from filodb.tools import commands

    sys.exit(commands.import_file(file, **kw))


@main.command()
@click.argument("selector")
@click.option("--start", required=True, help="unix s, RFC 3339, now, -1h")
@click.option("--end", default="now", show_default=True)
@_url_opt
@_ds_opt
@click.option("--out", "out_path", default=None, help="output file (default stdout)")
@click.option("--format", "fmt", type=click.Choice(["openmetrics", "remote-write"]), default="openmetrics",
              show_default=True)  # fmt: skip
@_token_opt
def export(selector: str, start: str, end: str, **kw: Any) -> None:
    """Export the raw samples of SELECTOR as OpenMetrics text (or a remote-write dump)."""
    from filodb.tools import commands

    sys.exit(commands.export(selector, _time_arg(start), _time_arg(end), **kw))  # type: ignore[arg-type]


@main.command()
@click.option("--timeout", "timeout_s", type=float, default=900.0, show_default=True,
              help="seconds the whole warm-up may take")  # fmt: skip
def warm(timeout_s: float) -> None:
    """Compile the kernels ahead of the first start (scripts/setup runs it after installing):
    a throwaway filodb up takes writes through every door, answers queries, restarts."""
    from filodb.warmup import warm as run_warm

    if timeout_s <= 0:
        _fail(f"--timeout must be > 0 seconds, not {timeout_s}", 2)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # so the throwaway filodb up is stopped and removed

    signal.signal(signal.SIGTERM, stop)
    try:
        rep = run_warm(console.get(), timeout_s)
    except FiloError as e:
        _fail(str(e), 1)
    _say(f"warm-up done in {rep.seconds:.0f} s: {rep.samples:,} samples written, "
         f"{rep.queries} queries answered; kernels are in {os.environ.get('NUMBA_CACHE_DIR')}")  # fmt: skip


if __name__ == "__main__":
    main()

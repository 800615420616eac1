"""``ltrr serve``: run the HTTP service over a saved engine directory (uvicorn)."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import click

from ltrr.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--engine", "engine_dir", required=True, type=click.Path(file_okay=False),
              help="Saved engine directory (from `ltrr build --out DIR`).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; a non-loopback address requires a token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (one of them is the learner; see docs/serving.md).")
@click.option("--state", "state_dir", type=click.Path(file_okay=False), default=None,
              help="Directory for the event log, learner lock and state snapshots (default: <engine>.state).")
@click.option("--events", "events_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite event log (default: <state>/events.sqlite).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the bearer token for write/admin endpoints (else $LTRR_TOKEN).")
@click.option("--feedback-window", type=float, default=None,
              help="Late-feedback window in seconds (default: the engine config's serve.feedback_window_s).")
@click.option("--snapshot-every", type=float, default=None,
              help="Seconds between state snapshots (default: serve.snapshot_every_s).")
@click.option("--max-body-bytes", type=int, default=None, help="Request body limit (default: serve.max_body_bytes).")
@click.option("--dsn", default=None, envvar="LTRR_STORE_DSN",
              help="PostgreSQL connection string: replicas share the event log, journal and snapshots "
                   "there (default: the engine config's [store]; else $LTRR_STORE_DSN).")
@click.option("--header-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds a client has to send its request headers (slow clients are disconnected).")
@click.option("--body-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a client has to send its request body after the headers.")
@click.option("--keep-alive", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds an idle keep-alive connection stays open.")
@click.option("--limit-concurrency", type=click.IntRange(min=1), default=256, show_default=True,
              help="Connections + in-flight requests per worker before new requests get 503.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(engine_dir, host, port, workers, state_dir, events_path, token_file, feedback_window,
          snapshot_every, max_body_bytes, dsn, header_timeout, body_timeout, keep_alive, limit_concurrency,
          log_level):
    """Serve search and feedback over HTTP (OpenAPI docs at /docs).

    POST /search, POST /feedback, GET /healthz /readyz /metrics, POST /admin/reload,
    GET /admin/status. Feedback and admin endpoints require `Authorization: Bearer <token>`
    when a token is set ($LTRR_TOKEN or --token-file); binding a non-loopback address without
    one is refused.
    """
    import uvicorn

    from ltrr.registry import check_plugin_records
    from ltrr.serve.app import SETTINGS_ENV, TOKEN_ENV
    from ltrr.serve.state import ServeSettings
    from ltrr.store.engine_dir import read_engine_manifest

    engine = Path(engine_dir).resolve()
    manifest = read_engine_manifest(engine)  # fail fast, with a clear message, before forking
    check_plugin_records(manifest.get("plugins", []), f"{engine_dir}/manifest.json")
    if token_file:
        tf = Path(token_file)
        if not tf.is_file() or not tf.read_text(encoding="utf-8").strip():
            raise ConfigError(f"--token-file {token_file}: missing or empty")
        token_file = str(tf.resolve())
    env_token = os.environ.get(TOKEN_ENV)
    if env_token is not None and not env_token.strip():
        raise ConfigError(f"${TOKEN_ENV} is set but blank: set a token or unset it")
    has_token = bool(token_file or env_token)
    if not is_loopback(host) and not has_token:
        raise ConfigError(f"refusing to serve on non-loopback address {host!r} without a token: "
                          f"set ${TOKEN_ENV} or pass --token-file")
    state = Path(state_dir).resolve() if state_dir else engine.with_name(engine.name + ".state")
    settings = ServeSettings(engine_dir=str(engine), state_dir=str(state),
                             events_path=str(Path(events_path).resolve()) if events_path else None,
                             dsn=dsn or None, token_file=token_file, feedback_window_s=feedback_window,
                             snapshot_every_s=snapshot_every, max_body_bytes=max_body_bytes,
                             header_timeout_s=header_timeout, body_timeout_s=body_timeout)
    os.environ[SETTINGS_ENV] = json.dumps(settings.model_dump(mode="json"))
    # requests are small: one thread per native pool (torch, LightGBM, faiss, BLAS). Spinning
    # OpenMP pools in the serving threads, the learner thread and other workers only contend
    # (measured: 2 workers went from 23 to 200 searches/s); set the variables to override.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    click.echo(f"ltrr serve: {engine} on http://{host}:{port} ({workers} worker(s), state {state}, "
               f"store {'postgres' if dsn else 'from the engine config'}, "
               f"auth {'on' if has_token else 'off (loopback only)'})", err=True)
    uvicorn.run("ltrr.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, log_config=log_config(log_level), access_log=False,
                timeout_graceful_shutdown=10, timeout_keep_alive=keep_alive, limit_concurrency=limit_concurrency,
                http="ltrr.serve.protocol:ReadTimeoutHttpToolsProtocol")


def log_config(level: str) -> dict:
    """logging.dictConfig for uvicorn and ltrr in every worker: time, level, pid, logger."""
    fmt = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    lvl = level.upper()
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": fmt}},
        "handlers": {"stderr": handler},
        "loggers": {name: {"handlers": ["stderr"], "level": lvl, "propagate": False}
                    for name in ("ltrr", "uvicorn", "uvicorn.error", "uvicorn.access")},
        "root": {"handlers": ["stderr"], "level": lvl},
    }

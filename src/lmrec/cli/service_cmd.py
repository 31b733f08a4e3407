"""`lmrec serve`, `lmrec keys create|list|revoke` and `lmrec demo`: run and operate the service.

`lmrec demo` builds a ready-to-query home (the generated bilingual shop of `lmrec.serving.demo`,
or MovieLens-100k), creates an admin key and serves it, printing curl examples; `--smoke` runs
the same examples in-process instead and exits (what CI runs).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from lmrec.cli.common import console, fail

keys_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="Create, list and revoke the service's API keys.")

HomeOpt = typer.Option(None, "--home", help="Service home folder (its sqlite store is <home>/lmrec.db).")
StoreOpt = typer.Option(None, "--store-url", help="Record store URL: sqlite:///path.db or postgresql://... "
                                                  "(default: the sqlite file in --home).")


def _store_url(home: Optional[Path], store_url: Optional[str]) -> str:
    if store_url:
        return store_url
    if home is None:
        raise fail("give --home DIR or --store-url URL")
    return f"sqlite:///{_check_home(home, create=False)}/lmrec.db"


def _settings_store() -> tuple[Optional[Path], Optional[str]]:
    """(home, store URL) from the settings' [engine] table, for commands given neither."""
    from lmrec.settings import SettingsError, load_settings

    try:
        engine = load_settings().engine
    except SettingsError as e:
        head, _, rest = str(e).partition("\n")
        raise fail(head + " " + "; ".join(line.strip() for line in rest.splitlines() if line.strip())) from None
    url, home = engine.get("store_url"), engine.get("home")
    if not url and not home:
        raise fail("give --home DIR or --store-url URL (or set [engine] home or store_url in lmrec.toml, "
                   "LMREC_ENGINE__HOME or LMREC_ENGINE__STORE_URL)")
    return (None if url else Path(str(home))), (str(url) if url else None)


def _sqlite_file(url: str) -> Optional[Path]:
    """The database file of a sqlite URL (None in memory); a malformed URL is a CLI error."""
    from lmrec.stores.sql import SQLiteStore

    try:
        return SQLiteStore._path(url)
    except ValueError as e:
        raise fail(f"--store-url: {e}") from None


def _open_store(home: Optional[Path], store_url: Optional[str], *, create: bool = False,
                hint: str = "a new store is made by `lmrec serve` or `lmrec keys create --create`") -> Any:
    """The record store of --home / --store-url. An existing SQLite file is required unless
    `create`: a misspelt --home must not silently start a second, empty database (whose keys
    the service would never see). Without either option, the settings' [engine] home or
    store_url (lmrec.toml, LMREC_ENGINE__HOME, LMREC_ENGINE__STORE_URL) name the store, as
    for `lmrec serve`."""
    if home is None and not store_url:
        home, store_url = _settings_store()
    if home is not None and not store_url:
        _check_home(home, create=create)
    url = _store_url(home, store_url)
    if url.lower().startswith("sqlite:"):
        path = _sqlite_file(url)
        if path is not None and not path.is_file():
            if path.exists():
                raise fail(f"{path} is not a database file")
            if not create:
                raise fail(f"no lmrec store at {path}: check --home / --store-url ({hint})")
    return open_store_or_fail(url)


def open_store_or_fail(url: str) -> Any:
    """`open_store(url)`; a bad URL, an unreachable server or an unwritable file is one CLI
    error line (the URL's password is never printed)."""
    from lmrec.cli.common import one_line
    from lmrec.stores.sql import open_store, redact_url

    try:
        return open_store(url)
    except ImportError as e:
        raise fail(f"cannot open the store {redact_url(url)}: {one_line(e)} (pip install 'lmrec[serve]')") from None
    except Exception as e:  # noqa: BLE001 - a bad URL or unreachable server is a CLI error
        msg, shown = one_line(e), redact_url(url)
        raise fail(f"cannot open the store {msg if msg.startswith(shown) else f'{shown}: {msg}'}") from None


def configure_logging(level: str = "INFO") -> None:
    """Service logs (the masked access log and application events) on stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("lmrec", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False


def _limit_thread_env(n: int) -> None:
    """Thread caps read by BLAS / OpenMP / torch when they load: set before any of them is imported."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def serve_command(
    home: Optional[Path] = typer.Option(None, "--home", help="Service home: index/, models/ and the sqlite store "
                                        "(or [engine] home in lmrec.toml, LMREC_ENGINE__HOME)."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config to train and serve: a TOML file or "
                                         "a shipped config name (default: serve-default, which needs no training)."),
    host: Optional[str] = typer.Option(None, "--host", help="Bind address (default 127.0.0.1, or LMREC_HOST)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 8000, or LMREC_PORT)."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="sqlite:///path.db or postgresql://..."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="auto (default: the home's recorded encoder, else e5-small for an empty or Chinese / Japanese / Korean catalog, minilm for an all-Latin one) | minilm | e5-small | minilm-int8 | fake ..."),
    index: Optional[str] = typer.Option(None, "--index", help="flat | hnsw"),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without API keys (local demo only)."),
    events: Optional[str] = typer.Option(None, "--events", help="Also consume events from a stream: "
                                         "nats://127.0.0.1:4222/lmrec.events or redis://127.0.0.1:6379/0?stream=KEY "
                                         "(or LMREC_EVENTS_URL)."),
    cross_encoder: Optional[Path] = typer.Option(None, "--cross-encoder", help="A trained cross-encoder folder "
                                                 "(`lmrec finetune-cross-encoder`): /search re-ranks its top hits."),
    rerank_top: Optional[int] = typer.Option(None, "--rerank-top", help="Search hits the cross-encoder re-scores "
                                             "(default 20)."),
    ssl_certfile: Optional[Path] = typer.Option(None, "--ssl-certfile", help="Serve HTTPS with this PEM "
                                                "certificate (or LMREC_SSL_CERTFILE)."),
    ssl_keyfile: Optional[Path] = typer.Option(None, "--ssl-keyfile", help="The certificate's PEM private key "
                                               "(or LMREC_SSL_KEYFILE; default: in the certificate file)."),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error"),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, each with its own engine over the "
                                "shared store and home; each folds in what the others write within ~0.25 s "
                                "(docs/deployment.md). Use PostgreSQL (or a SQLite file on this machine)."),
) -> None:
    """Run the HTTP service: the pipeline of --config over the store in --home (one uvicorn worker,
    or --workers N processes).

    At start it serves the newest saved version of that pipeline (caught up with the events
    since its fit) or fits one first; POST /admin/train (or `lmrec train`) fits a new version
    and swaps it in while requests are served."""
    _limit_thread_env(1)
    extra: dict[str, Any] = {}
    if cross_encoder is not None:
        if not (cross_encoder / "config.json").is_file():
            raise fail(f"--cross-encoder {cross_encoder}: not a cross-encoder folder (no config.json); train one "
                       "with `lmrec finetune-cross-encoder`")
        extra["cross_encoder"] = cross_encoder.expanduser().resolve()
    if rerank_top is not None:
        extra["rerank_top"] = rerank_top
    cfg = build_config(home, extra, host=host, port=port, store_url=store_url, encoder=encoder, index=index,
                       no_auth=no_auth, config=config, events_url=events, ssl_certfile=ssl_certfile,
                       ssl_keyfile=ssl_keyfile)
    run_server(cfg, log_level, workers=workers)


def build_config(home: Optional[Path], engine_extra: dict[str, Any] | None = None, *, create_home: bool = True,
                 **options: Any) -> Any:
    """A ServiceConfig from the CLI options (and engine settings) over LMREC_* variables and
    lmrec.toml; a bad setting or home is a CLI error, not a traceback. The home folder is
    created unless `create_home` is False (commands that only read an existing home)."""
    from lmrec.serving.config import ServiceConfig
    from lmrec.settings import SettingsError, load_settings

    engine: dict[str, Any] = dict(engine_extra or {})
    if home is not None:
        engine["home"] = _check_home(home, create=create_home)
    for name in ("store_url", "encoder", "index", "config"):
        if options.get(name) is not None:
            engine[name] = options[name]
    service = {k: options[k] for k in ("host", "port") if options.get(k) is not None}
    if options.get("no_auth"):
        service["auth_enabled"] = False
    for name in ("rate_limit_rps", "rate_limit_burst", "events_url", "ssl_certfile", "ssl_keyfile"):
        if options.get(name) is not None:
            service[name] = options[name]
    try:
        cfg = load_settings(ServiceConfig, **({"engine": engine} if engine else {}), **service)
    except SettingsError as e:
        head, _, rest = str(e).partition("\n")
        msg = head + " " + "; ".join(line.strip() for line in rest.splitlines() if line.strip())
        if "engine" in msg and "home" in msg and "Field required" in msg:
            msg += " (give --home DIR, or set [engine] home in lmrec.toml)"
        raise fail(msg) from None
    cfg.engine.home = _check_home(cfg.engine.home, create=create_home)
    return cfg


def _check_home(home: Path, *, create: bool = True) -> Path:
    """The service home as an absolute path (created when `create`); a file, or a folder that
    cannot be created or written, is a clear CLI error."""
    home = home.expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise fail(f"--home {home} is a file, not a folder: give the service's home folder")
    if not create:
        return home
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fail(f"--home {home}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise fail(f"--home {home}: the folder is not writable")
    return home


def train_command(
    home: Optional[Path] = typer.Option(None, "--home", help="Service home (as for `lmrec serve`)."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config to fit (default: the service's)."),
    overrides: Optional[str] = typer.Option(None, "--set", help="JSON merged into the config, e.g. "
                                            "'{\"rank\": {\"ranker\": \"none\"}}'."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="sqlite:///path.db or postgresql://..."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="The service's catalog encoder."),
    activate: bool = typer.Option(False, "--activate", help="Mark it as the version to serve: the service "
                                  "serves it at its next start or POST /admin/reload."),
) -> None:
    """Fit a pipeline on the events and catalog stored in --home and save it as a new version.

    A running service picks it up with POST /admin/reload {"version": ...}; with --activate a
    service started later serves it. Progress goes to the log."""
    import logging

    from lmrec.cli.common import parse_params

    configure_logging("info")
    cfg = build_config(home, store_url=store_url, encoder=encoder, config=config, create_home=False)
    params = parse_params(overrides) if overrides else None
    from lmrec.serving.versions import store_dataset, train_version

    engine_cfg = cfg.engine
    if engine_cfg.encoder == "auto":   # the home's catalog encoder, as the service would serve it
        from lmrec.serving.encoders import resolve_encoder

        store = _open_store(None, engine_cfg.resolved_store_url())
        try:
            engine_cfg = engine_cfg.model_copy(update={"encoder": resolve_encoder(
                engine_cfg.home, "auto", store, record=False)[0]})
        finally:
            store.close()
    try:
        from lmrec.pipeline.spec import load_spec

        ov = engine_cfg.pipeline_overrides() if params is None else params
        load_spec(engine_cfg.config, ov)
    except (ValueError, FileNotFoundError) as e:
        raise fail(f"--config: {e}") from None
    store = _open_store(None, engine_cfg.resolved_store_url())   # an existing store: nothing to fit otherwise
    log = logging.getLogger("lmrec.train")
    try:
        ds, last_seq = store_dataset(store, kinds=engine_cfg.train_kinds, template=engine_cfg.item_template,
                                     has_timestamps=engine_cfg.has_timestamps, home=engine_cfg.home)
        if not len(ds.interactions):
            raise fail(f"the store {engine_cfg.resolved_store_url()} holds no events of the kinds "
                       f"{', '.join(engine_cfg.train_kinds)} to fit on")
        log.info("fitting %s on %d events, %d items, %d users", engine_cfg.config, len(ds.interactions), ds.n_items,
                 ds.n_users)
        try:
            v = train_version(engine_cfg.home / "models", ds, config=engine_cfg.config, overrides=ov,
                              last_seq=last_seq, progress=lambda m: log.info("%s", m))
        except ValueError as e:
            raise fail(f"cannot fit {engine_cfg.config}: {e}") from None
    finally:
        store.close()
    if activate:
        from lmrec.serving.versions import mark_active

        mark_active(engine_cfg.home / "models", v.name)
    console.print(f"saved version [bold]{v.name}[/] ({v.meta['n_events']} events, fit {v.meta['fit_s']} s) in "
                  f"{engine_cfg.home / 'models'}" + (" (active)" if activate else ""))


def run_server(config: Any, log_level: str = "info", workers: int = 1) -> None:
    """Serve `config` with uvicorn in this process until interrupted.

    Checked first, each a one-line error and exit code 1: the record store opens (URL, server,
    file) and the port is free. An engine that then fails to open (a broken saved version, a
    missing encoder) also ends the process with one line, rather than a server answering 503."""
    import threading

    import uvicorn

    from lmrec.serving.app import create_app

    check_port(config.host, config.port)
    tls = check_tls(config)
    open_store_or_fail(config.store_url()).close()
    configure_logging(log_level)
    if not config.auth_enabled:
        console.print("[bold yellow]warning:[/] authentication is OFF (--no-auth): anyone who can reach "
                      f"{config.host}:{config.port} can read and write. Use this for local demos only.")
    config.engine.home.mkdir(parents=True, exist_ok=True)
    if workers > 1:
        _run_workers(config, log_level, workers, tls)
        return
    app = create_app(config)
    # uvicorn's own access log prints raw paths (user ids, queries): the app logs a masked line instead.
    # Keep-alive outlasts the 60 s idle timeout of common load balancers, so the server is never the
    # side that closes a pooled connection just as a client reuses it.
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, workers=1, access_log=False,
                                           log_config=None, log_level=log_level.lower(), timeout_keep_alive=65,
                                           timeout_graceful_shutdown=10, **tls))
    failed: list[str] = []

    def watch_open() -> None:
        st = app.state.service
        while not server.should_exit:
            if st.open_error:
                failed.append(st.open_message or st.open_error)
                server.should_exit = True
                return
            if st.ready:
                return
            time.sleep(0.1)

    threading.Thread(target=watch_open, name="lmrec-open-watch", daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:  # pragma: no cover - Ctrl-C during start-up
        pass
    if failed:
        raise fail(f"the engine failed to open: {failed[0]}")
    if not server.started and not failed:
        raise fail(f"the server did not start on {config.host}:{config.port} (see the log above)")


def _run_workers(config: Any, log_level: str, workers: int, tls: dict[str, str]) -> None:
    """`workers` uvicorn worker processes (lmrec.serving.workers), each following the shared
    store; a worker whose engine fails to open answers 503 on /ready and logs why."""
    import uvicorn

    from lmrec.serving.workers import DEFAULT_FOLLOW_S, check_shared_store, write_worker_config

    try:
        check_shared_store(config.store_url())
    except ValueError as e:
        raise fail(str(e)) from None
    if not config.engine.follow_interval_s:
        config.engine.follow_interval_s = DEFAULT_FOLLOW_S
    path = write_worker_config(config, log_level)
    console.print(f"serving with {workers} worker processes on {config.host}:{config.port} "
                  f"(each follows the store every {config.engine.follow_interval_s} s)")
    try:
        uvicorn.run("lmrec.serving.workers:app_factory", factory=True, workers=workers, host=config.host,
                    port=config.port, access_log=False, log_config=None, log_level=log_level.lower(),
                    timeout_keep_alive=65, timeout_graceful_shutdown=10, **tls)
    finally:
        path.unlink(missing_ok=True)


def check_tls(config: Any) -> dict[str, str]:
    """uvicorn's TLS arguments of the settings ({} without a certificate), after loading the
    certificate and key once: a file that is not PEM, or a key that does not match, is a
    one-line error here rather than a traceback from the server."""
    import ssl

    if config.ssl_certfile is None:
        return {}
    cert, key = str(config.ssl_certfile), str(config.ssl_keyfile) if config.ssl_keyfile else None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise fail(f"--ssl-certfile {cert}{f' / --ssl-keyfile {key}' if key else ''}: cannot load the certificate "
                   f"and key ({getattr(e, 'reason', None) or e})") from None
    return {"ssl_certfile": cert, **({"ssl_keyfile": key} if key else {})}


def check_port(host: str, port: int) -> None:
    """A one-line error when `host:port` cannot be listened on (in use, not an address here,
    a privileged port)."""
    import socket

    if not port:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise fail(f"--host {host}: cannot resolve the address ({e.strerror or e})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(addr)
        except OSError as e:
            hint = " (another process is listening there: stop it or choose another --port)" \
                if e.errno == errno.EADDRINUSE else ""
            raise fail(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None


# ---- keys -------------------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="What the key is for (shown in logs and `keys list`)."),
    scopes: str = typer.Option("read", "--scopes", help="Comma-separated: read, write, admin."),
    home: Optional[Path] = HomeOpt,
    store_url: Optional[str] = StoreOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the key (for scripts)."),
    create: bool = typer.Option(False, "--create", help="Create the home's store when there is none yet (without "
                                "it, a home with no store is an error: a misspelt --home would otherwise get a new, "
                                "empty store whose key the service never sees)."),
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    from lmrec.serving.auth import create_api_key

    store = _open_store(home, store_url, create=create, hint="give --create to start a new, empty store there")
    try:
        key, record = create_api_key(store, name, scopes.split(","))
    except ValueError as e:
        raise fail(str(e)) from None
    finally:
        store.close()
    if quiet:
        typer.echo(key)
        return
    console.print(f"created key [bold]{record.key_id}[/] ({record.name}) with scopes {', '.join(record.scopes)}")
    console.print("store it now, it is not shown again:")
    typer.echo(key)


@keys_app.command("list")
def keys_list(home: Optional[Path] = HomeOpt, store_url: Optional[str] = StoreOpt) -> None:
    """List the API keys (ids, names, scopes, state; never secrets)."""
    import datetime as dt

    store = _open_store(home, store_url)
    try:
        keys = store.api_keys()
    finally:
        store.close()
    t = Table(title=f"{len(keys)} API keys")
    for col in ("key id", "name", "scopes", "created", "state"):
        t.add_column(col)
    for k in keys:
        created = dt.datetime.fromtimestamp(k.created_at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        t.add_row(k.key_id, k.name, ",".join(k.scopes), created, "[red]revoked[/]" if k.revoked else "active")
    console.print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id (the part after 'lmr_', or the whole key)."),
                home: Optional[Path] = HomeOpt, store_url: Optional[str] = StoreOpt) -> None:
    """Revoke an API key (a running service stops accepting it within auth_cache_seconds)."""
    if key_id.startswith("lmr_"):
        from lmrec.serving.auth import AuthError, parse_key

        try:
            key_id = parse_key(key_id)[0]
        except AuthError as e:
            raise fail(f"{e.reason} (give the key id shown by `lmrec keys list`, or the whole key)") from None
    store = _open_store(home, store_url)
    try:
        done = store.revoke_api_key(key_id)
    finally:
        store.close()
    if not done:
        raise fail(f"no active key {key_id!r}")
    console.print(f"revoked {key_id}")


# ---- demo -------------------------------------------------------------------------------------------
DEMO_DATASETS = ("demo", "ml-100k")


@dataclass(frozen=True)
class Example:
    """One example request of the demo: shown as curl, run in-process by --smoke."""

    title: str
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    def curl(self, base: str) -> str:
        parts = [f"curl -s -X {self.method}" if self.method != "GET" else "curl -s",
                 '-H "Authorization: Bearer $LMREC_KEY"']
        if self.params and self.method == "GET":
            parts.append("--get")
            parts += [f"--data-urlencode {shlex.quote(f'{k}={v}')}" for k, v in self.params.items()]
        if self.body is not None:
            parts += ['-H "Content-Type: application/json"', f"-d {shlex.quote(json.dumps(self.body, ensure_ascii=False))}"]
        parts.append(shlex.quote(base + self.path))
        return " ".join(parts)


def demo_examples(dataset: str) -> list[Example]:
    """The requests the demo prints (and --smoke runs) for its data set."""
    if dataset == "demo":
        user, item, en, zh = "demo-u0001", "shoe-003", "waterproof trail running shoes", "轻便跑步鞋"
        new_item = {"title": "Stridewell Cloudstep Kids' running shoe", "text": "Soft foam and a hook-and-loop strap, "
                    "for school sports days.", "categories": ["running-shoes"], "attributes": {"price": 399.0}}
    else:
        user, item, en, zh = "196", "50", "space adventure with robots", "太空冒险电影"
        new_item = {"title": "Interstellar Drift (2026)", "text": "A crew of engineers races a dying star.",
                    "categories": ["Sci-Fi", "Adventure"]}
    return [
        Example(f"recommendations for user {user}", "GET", f"/recommend/{user}", {"k": 5}),
        Example("search in English", "GET", "/search", {"q": en, "k": 5}),
        Example("search in Chinese", "GET", "/search", {"q": zh, "k": 5}),
        Example("personalised search", "GET", "/search", {"q": en, "k": 5, "user_id": user}),
        Example(f"items similar to {item}", "GET", f"/items/{item}/similar", {"k": 5}),
        Example("post an event (a click)", "POST", "/events", body={"user_id": user, "item_id": item, "kind": "click"}),
        Example("upsert an item (searchable at once)", "PUT", "/items/new-demo-item", body=new_item),
        Example("search finds the new item", "GET", "/search", {"q": new_item["title"], "k": 3}),
        Example("recommendations with explanations", "GET", f"/recommend/{user}", {"k": 3, "explain": "true"}),
    ] + ([  # the demo shop's bilingual FAQ (<home>/faq.json); edit it with PUT / DELETE /admin/faq/{entry_id}
        Example("FAQ answer in English", "GET", "/faq", {"q": "how long until my order arrives?", "k": 3}),
        Example("FAQ answer in Chinese", "GET", "/faq", {"q": "退款多久到账", "k": 3}),
        Example("FAQ hands over when unsure", "GET", "/faq", {"q": "what is the weather tomorrow"}),
    ] if dataset == "demo" else [])


def seed_home(config: Any, dataset: str, data_dir: Optional[Path]) -> dict[str, Any]:
    """Write the demo catalog and interactions into the home's store (once: a home that
    already has items is left as it is). Returns what is in the store."""
    from lmrec.stores.sql import open_store

    config.engine.home.mkdir(parents=True, exist_ok=True)
    store = open_store(config.store_url())
    try:
        reused = store.count_items() > 0
        if not reused:
            if dataset == "demo":
                from lmrec.serving.demo import seed_demo

                with console.status("writing the demo catalog and shoppers"):
                    seed_demo(store)
            else:
                _seed_movielens(store, data_dir)
        if dataset == "demo":   # the shop's FAQ, unless the home has one (PUT /admin/faq edits it)
            from lmrec.serving.faq import seed_demo_faq

            seed_demo_faq(config.engine.home)
        return {"items": store.count_items(), "events": store.count_events(), "reused": reused}
    finally:
        store.close()


#: what lmrec writes into a service home: `demo --reset` removes these and nothing else
HOME_ENTRIES = ("lmrec.db", "lmrec.db-wal", "lmrec.db-shm", "lmrec.db-journal", "index", "models", "embeddings",
                "demo-admin.key", "faq.json")
DEMO_KEY_FILE = "demo-admin.key"


def reset_home(home: Path) -> list[str]:
    """Delete what lmrec wrote in `home` (the store, index, models, embeddings, demo key);
    other files are left alone. Returns the names removed."""
    import shutil

    removed = []
    for name in HOME_ENTRIES:
        path = home / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
        except OSError as e:
            raise fail(f"--reset: cannot remove {path} ({e.strerror or e})") from None
        removed.append(name)
    return removed


def demo_key(store: Any, home: Path, dataset: str) -> tuple[str, bool]:
    """The demo's admin key: the one saved in <home>/demo-admin.key while the store still
    accepts it (True), else a new key, saved there with owner-only permissions (False). So a
    re-run of the demo adds no key and the exported LMREC_KEY keeps working."""
    from lmrec.serving.auth import AuthError, ApiKeyVerifier, create_api_key

    path = home / DEMO_KEY_FILE
    if path.is_file():
        saved = path.read_text(encoding="utf-8").strip()
        try:
            ApiKeyVerifier(store, cache_seconds=0).verify(saved)
            return saved, True
        except AuthError:
            pass   # revoked, or from a store that was replaced: make a new one
    key, _ = create_api_key(store, f"demo-admin-{dataset}", ["admin"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key, False


def _seed_movielens(store: Any, data_dir: Optional[Path]) -> None:
    """MovieLens-100k: titles and genres as items, ratings as `rating` events."""
    from lmrec.cli.common import load_named_dataset
    from lmrec.cli.progress import Reporter
    from lmrec.stores.bulk import import_dataset

    ds = load_named_dataset("ml-100k", data_dir)
    with Reporter("write ratings as events", total=len(ds.interactions), unit="events") as rep:
        import_dataset(store, ds, on_progress=lambda done, total: rep.update(completed=done))


def demo_command(
    dataset: str = typer.Option("demo", "--dataset", "-d",
                                help="demo (a generated bilingual shop) or ml-100k (MovieLens from the data directory). "
                                     "With --eval: any data set name or 'auto'."),
    port: int = typer.Option(8000, "--port", help="Port of the demo server."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address of the demo server."),
    smoke: bool = typer.Option(False, "--smoke", help="Run the example requests in-process, print the answers and exit."),
    home: Optional[Path] = typer.Option(None, "--home", help="Demo home (default: ~/.cache/lmrec/demo/<dataset>; "
                                                             "a temporary folder with --smoke)."),
    encoder: str = typer.Option("e5-small", "--encoder", help="Text encoder: e5-small (multilingual, the "
                                                              "catalog has Chinese items), minilm, fake ..."),
    eval_: bool = typer.Option(False, "--eval", help="Instead: evaluate the baselines (same as `lmrec bench-demo`)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides LMREC_DATA_DIR."),
    reset: bool = typer.Option(False, "--reset", help="Start the demo home over: delete its store, index, models "
                               "and demo key, then seed it again (without it a re-run keeps what was posted)."),
) -> None:
    """Serve a ready-made shop (or MovieLens-100k) and print curl examples; works offline.

    The home is kept between runs: a second run serves the same store (with the events and
    items posted meanwhile) and the same admin key (kept in <home>/demo-admin.key, readable by
    you only); `--reset` starts over from the generated data."""
    if eval_:
        from lmrec.cli.eval_cmd import demo_command as eval_demo

        eval_demo(dataset="auto" if dataset == "demo" else dataset, data_dir=data_dir)
        return
    if dataset not in DEMO_DATASETS:
        raise fail(f"--dataset must be one of {', '.join(DEMO_DATASETS)} (got {dataset!r})")
    if not smoke:
        check_port(host, port)   # before seeding and embedding, which can take minutes
    _limit_thread_env(1)
    with tempfile.TemporaryDirectory(prefix="lmrec-demo-") as tmp:
        if home is None:
            home = Path(tmp) if smoke else _cache_dir() / "demo" / dataset
        # one embedding cache for every demo home: a re-run (or a --smoke in a fresh folder) embeds nothing again
        if reset:
            removed = reset_home(_check_home(home))
            console.print(f"reset {home}: removed {', '.join(removed) if removed else 'nothing (it was empty)'}")
        config = build_config(home, {"embedding_cache": _cache_dir() / "embeddings", "progress": True},
                              host=host, port=port, encoder=encoder)
        summary = seed_home(config, dataset, data_dir)
        store = _open_store(None, config.store_url())
        try:
            key, reused = demo_key(store, config.engine.home, dataset)
        finally:
            store.close()
        state = "reused (its events and items as the last run left them; --reset starts over)" \
            if summary["reused"] else "new"
        console.print(f"[bold]{dataset}[/] home {home}, {state}: {summary['items']} items, {summary['events']} "
                      f"events; encoder {encoder}; admin key {'reused' if reused else 'created'}")
        examples = demo_examples(dataset)
        if smoke:
            raise typer.Exit(run_smoke(config, key, examples))
        _print_curl(config, key, examples)
        run_server(config)


def _cache_dir() -> Path:
    from lmrec.settings import Settings

    return Path(Settings().cache_dir).expanduser()


def _print_curl(config: Any, key: str, examples: list[Example]) -> None:
    base = f"http://{config.host}:{config.port}"
    console.print(f"\n[bold]admin key[/] (kept in {config.engine.home / DEMO_KEY_FILE}; "
                  f"`lmrec keys list --home {config.engine.home}`):")
    typer.echo(f"export LMREC_KEY={key}\n")
    for ex in examples:
        console.print(f"[dim]# {ex.title}[/]")
        typer.echo(ex.curl(base))
    console.print(f"\nconsole: {base}/ui   API docs: {base}/docs   readiness: {base}/ready   metrics: {base}/metrics\n")


def run_smoke(config: Any, key: str, examples: list[Example], timeout_s: float = 600.0) -> int:
    """Run `examples` against the app in-process; 0 when every one succeeded."""
    import time

    from fastapi.testclient import TestClient

    from lmrec.serving.app import create_app

    app = create_app(config)
    failures = 0
    with TestClient(app) as client:
        with console.status("opening the engine (the first run embeds the catalog)"):
            deadline = time.monotonic() + timeout_s
            while client.get("/ready").status_code != 200:
                if time.monotonic() > deadline or app.state.service.open_error:
                    console.print(f"[red]engine not ready: {client.get('/ready').json()}[/]")
                    return 1
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {key}"}
        engine = app.state.service.engine
        for ex in examples:
            r = client.request(ex.method, ex.path, params=ex.params or None, json=ex.body, headers=headers)
            ok = r.status_code < 400
            failures += not ok
            console.print(f"[bold]{ex.title}[/]: {ex.method} {ex.path} {ex.params or ''} -> "
                          f"[{'green' if ok else 'red'}]{r.status_code}[/]", highlight=False)
            console.print(_summarise(r.json() if ok else r.text, engine), highlight=False, markup=False)
    console.print("[green]smoke test passed[/]" if not failures else f"[red]{failures} example(s) failed[/]")
    return 1 if failures else 0


def _summarise(body: Any, engine: Any) -> str:
    """A ranking as 'rank. id  title [sources]' lines (and the first explanation); anything
    else as compact JSON."""
    if isinstance(body, dict) and "items" in body and "ranking_id" in body:
        lines = [f"  ranking {body['ranking_id'][:8]}.., model {body['model_version']}"]
        for n, it in enumerate(body["items"], 1):
            rec = engine.get_item(it["item_id"]) if engine is not None else None
            title = rec.title if rec is not None else ""
            lines.append(f"  {n}. {it['item_id']} {title[:44]} [{','.join(it['sources'])}]")
        first = body["items"][0].get("explanation") if body["items"] else None
        if first:
            lines.append("  why #1: " + _clip(json.dumps(first, ensure_ascii=False), 200))
        return "\n".join(lines)
    return "  " + _clip(json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body, 300)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "..."

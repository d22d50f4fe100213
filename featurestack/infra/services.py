"""The services a profile uses: prepare them, check them (`featurestack doctor`), reset them.

The scale profile owns one PostgreSQL database (``FEATURESTACK_PG_URL``, default
``featurestack_scale``) with one schema per tool (``feast``, ``mlflow``, ``optuna``) and every
Redis key under ``FEATURESTACK_REDIS_PREFIX``. :func:`prepare` creates the database (marked
with a comment saying featurestack created it) and the schemas, once per process; :func:`reset`
drops only a database carrying that mark and only keys under the prefix. Every probe is bounded
by the settings' ``timeout_s``, and an unreachable service raises
:class:`~featurestack.core.errors.ServiceUnavailable` naming the URL and the fix, before any tool
writes anything (MLflow alone would retry a dead database for minutes).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurestack.core.errors import ServiceUnavailable, StoreUnavailable, redact
from featurestack.core.settings import SCHEMAS, Settings

#: The comment `prepare` puts on the database it creates; `reset` drops nothing without it.
OWNED_MARK = (
    "created by featurestack (scale profile); `featurestack reset --profile scale` drops it"
)

_prepared: set[str] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Check:
    """One line of `featurestack doctor`."""

    service: str
    where: str
    ok: bool
    detail: str
    fix: str = ""

    def render(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"  {mark} {self.service:<18} {self.where}\n         {self.detail}"
        return text + (f"\n         fix: {self.fix}" if self.fix and not self.ok else "")


# -- PostgreSQL ---------------------------------------------------------------------------------


def _libpq(url: str) -> tuple[str, str]:
    """(libpq URI without the SQLAlchemy driver suffix, database name) of a PostgreSQL URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"{redact(url)} is not a PostgreSQL URL (postgresql[+psycopg]://user@host:port/db)"
        )
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql")), parts.path.lstrip("/")


def _connect(url: str, timeout_s: float, dbname: str | None = None) -> Any:
    import psycopg

    uri, _ = _libpq(url)
    extra: dict[str, Any] = {"connect_timeout": max(1, round(timeout_s)), "autocommit": True}
    if dbname is not None:
        extra["dbname"] = dbname
    return psycopg.connect(uri, **extra)


def _pg_down(settings: Settings, err: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        "PostgreSQL",
        redact(settings.pg_url),
        str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__,
        "start PostgreSQL or point FEATURESTACK_PG_URL at a server you may create a database "
        "on (`featurestack doctor` checks it); nothing was written",
    )


def _database_exists(settings: Settings) -> bool:
    import psycopg

    _, name = _libpq(settings.pg_url)
    try:
        with _connect(settings.pg_url, settings.timeout_s, dbname="postgres") as con:
            row = con.execute("select 1 from pg_database where datname = %s", [name]).fetchone()
    except psycopg.OperationalError as err:
        raise _pg_down(settings, err) from err
    return row is not None


def prepare(settings: Settings) -> None:
    """Create the scale profile's database and schemas if missing (idempotent, race-safe)."""
    import psycopg
    from psycopg import errors, sql

    with _lock:
        if settings.pg_url in _prepared:
            return
        _, name = _libpq(settings.pg_url)
        try:
            if not _database_exists(settings):
                with _connect(settings.pg_url, settings.timeout_s, dbname="postgres") as con:
                    try:
                        con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                        con.execute(
                            sql.SQL("comment on database {} is {}").format(
                                sql.Identifier(name), sql.Literal(OWNED_MARK)
                            )
                        )
                    except errors.DuplicateDatabase:
                        pass  # another process created it first
                    except errors.InsufficientPrivilege as err:
                        raise ServiceUnavailable(
                            "PostgreSQL",
                            redact(settings.pg_url),
                            f"database {name} does not exist and this user may not create it",
                            f"create it (`createdb {name}`) or grant CREATEDB, or point "
                            "FEATURESTACK_PG_URL at an existing database",
                        ) from err
            with _connect(settings.pg_url, settings.timeout_s) as con:
                for schema in SCHEMAS:
                    with contextlib.suppress(errors.UniqueViolation):  # created concurrently
                        con.execute(
                            sql.SQL("create schema if not exists {}").format(sql.Identifier(schema))
                        )
            _create_feast_registry_tables(settings)
        except psycopg.OperationalError as err:
            raise _pg_down(settings, err) from err
        _prepared.add(settings.pg_url)


def _create_feast_registry_tables(settings: Settings) -> None:
    """Feast's SQL registry creates its tables on first use (``CREATE TABLE``), which two
    processes starting at once race on (a UniqueViolation on ``pg_type``, seen in a test of
    two concurrent writers); create them here, serialised by a PostgreSQL advisory lock."""
    import sqlalchemy
    from feast.infra.registry.sql import metadata

    engine = sqlalchemy.create_engine(settings.feast_registry_url)
    try:
        with engine.begin() as con:
            con.execute(
                sqlalchemy.text("select pg_advisory_xact_lock(hashtext(:k))"),
                {"k": "featurestack:feast-registry"},
            )
            metadata.create_all(con)
    except sqlalchemy.exc.OperationalError as err:
        raise _pg_down(settings, err) from err
    finally:
        engine.dispose()


def check_postgres(settings: Settings) -> Check:
    """Reachable, server version, may create the database or has CREATE on it, schemas."""
    import psycopg

    where = redact(settings.pg_url)
    try:
        _, name = _libpq(settings.pg_url)
        exists = _database_exists(settings)
        target = name if exists else "postgres"
        with _connect(settings.pg_url, settings.timeout_s, dbname=target) as con:
            version = con.execute("show server_version").fetchone()[0]
            user, createdb = con.execute(
                "select current_user, rolcreatedb or rolsuper from pg_roles "
                "where rolname = current_user"
            ).fetchone()
            if not exists:
                ok = bool(createdb)
                detail = (
                    f"PostgreSQL {version}, user {user}; database {name} does not exist yet "
                    + ("(featurestack creates it on first use)" if ok else "and may not be created")
                )
                fix = f"`createdb {name}` as an administrator, or grant CREATEDB to {user}"
                return Check("PostgreSQL", where, ok, detail, fix)
            can_create = con.execute(
                "select has_database_privilege(current_user, current_database(), 'CREATE')"
            ).fetchone()[0]
            present = {
                r[0]
                for r in con.execute(
                    "select nspname from pg_namespace where nspname = any(%s)", [list(SCHEMAS)]
                )
            }
    except ServiceUnavailable as err:
        return Check("PostgreSQL", where, False, str(err.cause), err.fix)
    except (psycopg.Error, ValueError) as err:
        return Check("PostgreSQL", where, False, str(err).strip(), "check FEATURESTACK_PG_URL")
    missing = [s for s in SCHEMAS if s not in present]
    ok = bool(can_create) or not missing
    detail = (
        f"PostgreSQL {version}, user {user}, database {name}; CREATE on it: "
        f"{'yes' if can_create else 'no'}; schemas present: {sorted(present) or 'none'}"
        + (f" (missing {missing}: created on first use)" if missing and can_create else "")
    )
    return Check("PostgreSQL", where, ok, detail, f"`grant create on database {name} to {user}`")


def drop_database(settings: Settings) -> str:
    """Drop the scale database if featurestack created it; say what was done."""
    import psycopg
    from psycopg import sql

    _, name = _libpq(settings.pg_url)
    try:
        if not _database_exists(settings):
            return f"PostgreSQL: no database {name}"
        with _connect(settings.pg_url, settings.timeout_s, dbname="postgres") as con:
            mark = con.execute(
                "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                [name],
            ).fetchone()[0]
            if mark != OWNED_MARK:
                raise ValueError(
                    f"database {name} was not created by featurestack (its comment is "
                    f"{mark!r}); reset drops only databases it created. Drop it yourself or "
                    "point FEATURESTACK_PG_URL elsewhere"
                )
            con.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
    except psycopg.OperationalError as err:
        raise _pg_down(settings, err) from err
    with _lock:
        _prepared.discard(settings.pg_url)
    return f"PostgreSQL: dropped database {name}"


def check_sqlalchemy(service: str, url: str, timeout_s: float, fix: str) -> Check:
    """Any SQLAlchemy URL (the MLflow or Optuna store): connect and ask the server's version."""
    import sqlalchemy

    where = redact(url)
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        return _writable(service, where, folder, fix)
    args: dict[str, Any] = {}
    if url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
        args = {"connect_timeout": max(1, round(timeout_s))}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.NullPool)
        with engine.connect() as con:
            version = con.exec_driver_sql("select version()").scalar()
    except sqlalchemy.exc.SQLAlchemyError as err:
        cause = str(getattr(err, "orig", err)).strip().splitlines()[0]
        return Check(service, where, False, cause, fix)
    return Check(service, where, True, str(version).split(" on ")[0])


def _writable(service: str, where: str, folder: Path, fix: str) -> Check:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    import os

    ok = os.access(probe, os.W_OK)
    detail = f"folder {folder} " + ("writable" if ok else f"not writable ({probe})")
    return Check(service, where, ok, detail, fix)


# -- Redis --------------------------------------------------------------------------------------


def _redis(settings: Settings) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.timeout_s,
        socket_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def check_redis(settings: Settings) -> Check:
    """Reachable, version, may write, delete and run Lua under the prefix."""
    import redis

    where = redact(settings.redis_url)
    fix = (
        "start Redis or point FEATURESTACK_REDIS_URL at one (redis://[:password@]host:port/db); "
        "the user needs GET/SET/DEL/SCAN/UNLINK/EVAL on keys "
        f"{settings.redis_prefix}:*"
    )
    try:
        client = _redis(settings)
        info = client.info("server")
        probe = f"{settings.redis_prefix}:__doctor"
        client.set(probe, b"1", ex=60)
        lua = client.eval("return redis.call('GET', KEYS[1])", 1, probe)
        client.delete(probe)
        keys = sum(1 for _ in client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
    except redis.RedisError as err:
        return Check("Redis", where, False, f"{type(err).__name__}: {err}", fix)
    ok = lua == b"1"
    return Check(
        "Redis",
        where,
        ok,
        f"Redis {info.get('redis_version', '?')}; SET/EVAL/DEL under "
        f"{settings.redis_prefix}:* ok; {keys:,} key(s) there now",
        fix,
    )


def require_online(settings: Settings) -> None:
    """Raise StoreUnavailable unless the scale profile's Redis answers a PING in time (before
    `apply` writes the registry or `materialize` starts reading the offline store)."""
    import redis

    try:
        _redis(settings).ping()
    except redis.RedisError as err:
        raise StoreUnavailable(
            "Redis (online store)",
            redact(settings.redis_url),
            f"{type(err).__name__}: {err}",
            "start Redis or point FEATURESTACK_REDIS_URL at one (`featurestack doctor` checks "
            "it); nothing was written",
        ) from err


def delete_redis_keys(settings: Settings) -> str:
    """Unlink every key under the profile's prefix (SCAN, so Redis is never blocked)."""
    import redis

    deleted = 0
    try:
        client = _redis(settings)
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    except redis.RedisError as err:
        raise ServiceUnavailable(
            "Redis", redact(settings.redis_url), err, "start Redis, then run reset again"
        ) from err
    return f"Redis: deleted {deleted:,} key(s) under {settings.redis_prefix}:*"


# -- MLflow tracking ----------------------------------------------------------------------------


def check_tracking(settings: Settings) -> Check:
    """The MLflow tracking store: a database (connect), a server (/health) or a folder."""
    uri = settings.mlflow_tracking_uri
    fix = (
        "start the store or set MLFLOW_TRACKING_URI (a database URL, http(s)://server, or "
        "leave it unset for the profile's default)"
    )
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            answer = requests.get(f"{uri.rstrip('/')}/health", timeout=settings.timeout_s)
            answer.raise_for_status()
            version = requests.get(f"{uri.rstrip('/')}/version", timeout=settings.timeout_s)
        except requests.RequestException as err:
            return Check("MLflow tracking", redact(uri), False, f"{type(err).__name__}: {err}", fix)
        return Check("MLflow tracking", redact(uri), True, f"MLflow server {version.text.strip()}")
    if uri.startswith("file:") or "://" not in uri:
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
        return _writable("MLflow tracking", uri, folder, fix)
    return check_sqlalchemy("MLflow tracking", uri, settings.timeout_s, fix)


def _require(
    settings: Settings, service: str, url: str, check: Callable[[Settings], Check]
) -> None:
    """Raise ServiceUnavailable unless ``check`` passes; the profile's own database (and its
    schemas) is prepared first when ``url`` lives in it."""
    if settings.scale and url.startswith(settings.pg_url):
        prepare(settings)
    found = check(settings)
    if not found.ok:
        raise ServiceUnavailable(service, found.where, found.detail, found.fix)


def require_tracking(settings: Settings) -> None:
    """Raise ServiceUnavailable unless the tracking store answers (before MLflow's retries)."""
    _require(settings, "MLflow tracking", settings.mlflow_tracking_uri, check_tracking)


def require_optuna(settings: Settings) -> None:
    """Raise ServiceUnavailable unless the Optuna storage answers."""
    _require(settings, "Optuna storage", settings.optuna_storage, check_optuna)


def check_artifacts(settings: Settings) -> Check:
    where = settings.artifact_location
    if where.startswith("file:"):
        folder = Path(urllib.parse.urlsplit(where).path)
        return _writable(
            "MLflow artifacts", where, folder, "set FEATURESTACK_ARTIFACTS_URI to a writable place"
        )
    return Check(
        "MLflow artifacts",
        where,
        True,
        "object store: not probed here (MLflow uses the store's own credentials)",
    )


def check_optuna(settings: Settings) -> Check:
    url = settings.optuna_storage
    fix = "set FEATURESTACK_OPTUNA_STORAGE to a database URL, or unset it for the profile default"
    return check_sqlalchemy("Optuna storage", url, settings.timeout_s, fix)


# -- Spark --------------------------------------------------------------------------------------


def check_spark_engine(settings: Settings) -> Check:
    """The spark profile's engine, without starting a JVM (doctor stays fast): pyspark's
    version, the Java runtime's, and for a ``spark://host:port`` master a TCP connection."""
    import socket
    import subprocess

    from featurestack.spark.session import SparkUnavailable, check_spark

    master = settings.spark_master
    extra = f"; {len(settings.spark_conf)} setting(s) from FEATURESTACK_SPARK_CONF"
    try:
        check_spark()
    except SparkUnavailable as err:
        return Check("Spark", master, False, str(err), "uv sync; install Java 17 or 21")
    import pyspark

    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=settings.timeout_s * 5
        ).stderr.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as err:
        return Check("Spark", master, False, f"java -version failed: {err}", "set JAVA_HOME")
    detail = f"Spark {pyspark.__version__} (pyspark), {java.strip()}"
    if master.startswith("spark://"):
        host, _, port = master.removeprefix("spark://").split(",")[0].partition(":")
        try:
            with socket.create_connection((host, int(port or 7077)), settings.timeout_s):
                pass
        except (OSError, ValueError) as err:
            return Check(
                "Spark",
                master,
                False,
                f"{detail}; master unreachable: {err}",
                "start the standalone master or set FEATURESTACK_SPARK_MASTER (default local[2])",
            )
    return Check("Spark", master, True, detail + extra)


# -- doctor and reset ---------------------------------------------------------------------------


def doctor(settings: Settings) -> list[Check]:
    """Every service of the active profile, checked within the time budget each."""
    checks: list[Check] = []
    if settings.scale:
        checks.append(check_postgres(settings))
        checks.append(check_redis(settings))
        if checks[0].ok:
            with contextlib.suppress(ServiceUnavailable):
                prepare(settings)  # the schemas the stores below connect into
    else:
        checks.append(
            _writable(
                "data folder",
                str(settings.data_dir),
                settings.data_dir,
                "set FEATURESTACK_DATA_DIR to a writable folder",
            )
        )
    if settings.spark:
        checks.append(check_spark_engine(settings))
    checks.append(check_tracking(settings))
    checks.append(check_artifacts(settings))
    checks.append(check_optuna(settings))
    return checks


def reset(settings: Settings) -> list[str]:
    """Remove what the scale profile created: its Redis keys, its database (only if featurestack
    created it), its artifacts folder and resolved Feast configuration in the data folder."""
    if not settings.scale:
        raise ValueError("reset removes the scale profile's state; for local files: `make clean`")
    done = [delete_redis_keys(settings), drop_database(settings)]
    artifacts = settings.artifact_location
    if artifacts.startswith("file:"):
        folder = Path(urllib.parse.urlsplit(artifacts).path)
        if folder.is_relative_to(settings.data_dir) and folder.exists():
            shutil.rmtree(folder)
            done.append(f"artifacts: removed {folder}")
    if settings.feast_yaml.exists():
        settings.feast_yaml.unlink()
        done.append(f"removed {settings.feast_yaml}")
    return done

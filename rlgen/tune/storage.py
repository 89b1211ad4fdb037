"""Where a study lives: an Optuna journal file by default (safe for several worker processes on
one machine), or any Optuna RDB URL (``postgresql://...``, ``sqlite:///...``) that workers on
many machines share. Every failure to reach or find it is one clear line."""

from __future__ import annotations

from pathlib import Path

from rlgen.errors import InputError

RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")


def open_storage(storage: str | None, default_journal: Path, create: bool = True):
    """An Optuna storage: ``storage`` (an RDB URL or a journal file path), else ``default_journal``.
    ``create=False`` (reading a study) refuses a journal file that does not exist instead of making it."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage is None or "://" not in storage:
        path = Path(storage) if storage is not None else default_journal
        if path.exists() and path.is_dir():
            raise InputError(f"--storage {path} is a directory; give a journal file path or a database URL")
        if not create and not path.is_file():
            raise InputError(f"no study journal at {path}: run `rlgen tune` first, or pass the --storage "
                             "(and --logdir) the study was run with")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    scheme = storage.split("://", 1)[0].split("+", 1)[0]
    if scheme not in RDB_SCHEMES:
        raise InputError(f"--storage {storage}: unknown scheme {scheme!r}; use a journal file path or a URL "
                         f"starting with {', '.join(s + '://' for s in RDB_SCHEMES)}")
    try:
        return optuna.storages.RDBStorage(storage, engine_kwargs=_engine_kwargs(scheme))
    except ImportError as exc:
        raise InputError(f"--storage {_redact(storage)} needs a database driver: {exc} "
                         "(for PostgreSQL: pip install 'psycopg[binary]')") from None
    except Exception as exc:  # sqlalchemy's OperationalError and friends: the server is not there
        if type(exc).__module__.split(".")[0] != "sqlalchemy":
            raise
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise InputError(f"cannot reach --storage {_redact(storage)}: {reason}; check the host, port, "
                         "user and database name") from None


def _engine_kwargs(scheme: str) -> dict:
    # Fail fast on an unreachable server instead of waiting for the OS timeout.
    return {"connect_args": {"connect_timeout": 10}} if scheme == "postgresql" else {}


def _redact(url: str) -> str:
    """The URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def load_existing_study(name: str, storage, where: str):
    """A study that must exist (``--show``, ``--export-best``)."""
    import optuna

    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise InputError(f"no study named {name!r} in {where} (studies there: {known}); run `rlgen tune` first "
                         "or pass --storage / --study-name of the study you mean")
    return optuna.load_study(study_name=name, storage=storage)

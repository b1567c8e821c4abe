"""scisql-compatible MariaDB UDFs: build, install and register them.

Owns the Skyshard re-implementation of the scisql user-defined functions that
Qserv-style queries use (``scisql_angSep``, ``scisql_s2PtInBox``,
``scisql_s2PtInCircle``, ``scisql_s2PtInEllipse``, ``scisql_s2PtInCPoly``,
the flux <-> AB magnitude conversions, ...).  The C source is
``worker/scisql/scisql.c`` (semantics follow lsst/scisql; the functions,
units and NULL rules are documented in ``docs/scisql.md``).  This module
compiles it into ``libskyshard_scisql.so``, copies that into a MariaDB
server's ``@@plugin_dir`` and runs ``CREATE FUNCTION ... SONAME`` for every
function.  It does not start servers and knows nothing about chunks or
queries.

Typical use, on a connection to a server running on this machine::

    from worker import scisql
    scisql.ensure_installed(connection)

Building needs ``gcc`` and the MariaDB UDF headers (``mysql.h`` with
``UDF_INIT``/``UDF_ARGS``), which on Debian/Ubuntu come from the
``libmariadb-dev`` package.  Copying into ``@@plugin_dir`` needs write access
to it (root for the default ``/usr/lib/mysql/plugin``), and the server must
run on the same machine.  UDFs are global to a server and persist in
``mysql.func`` across restarts.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "FUNCTIONS",
    "FUNCTION_NAMES",
    "HEADERS_PACKAGE",
    "LIBRARY_NAME",
    "MAX_VERTICES",
    "SOURCE",
    "ScisqlBuildError",
    "ScisqlError",
    "ScisqlInstallError",
    "build",
    "default_build_dir",
    "ensure_installed",
    "header_flags",
    "install_functions",
    "install_library",
    "installed_functions",
    "plugin_dir",
]

LIBRARY_NAME = "libskyshard_scisql.so"
"""File name of the shared library (the ``SONAME`` of every function)."""

SOURCE = Path(__file__).resolve().with_name("scisql.c")
"""The C source of the UDFs."""

MAX_VERTICES = 20
"""Most vertices a ``scisql_s2PtInCPoly``/``scisql_s2CPolyToBin`` polygon may have (as scisql)."""

HEADERS_PACKAGE = "libmariadb-dev"
"""The Debian/Ubuntu package that provides ``mysql.h`` with the UDF API."""

FUNCTIONS: dict[str, str] = {
    # spherical geometry
    "scisql_angSep": "REAL",
    "scisql_s2PtInBox": "INTEGER",
    "scisql_s2PtInCircle": "INTEGER",
    "scisql_s2PtInEllipse": "INTEGER",
    "scisql_s2PtInCPoly": "INTEGER",
    "scisql_s2CPolyToBin": "STRING",
    # photometry, fluxes in erg/cm^2/s/Hz
    "scisql_fluxToAbMag": "REAL",
    "scisql_fluxToAbMagSigma": "REAL",
    "scisql_abMagToFlux": "REAL",
    "scisql_abMagToFluxSigma": "REAL",
    # photometry, fluxes in nanojansky
    "scisql_nanojanskyToAbMag": "REAL",
    "scisql_nanojanskyToAbMagSigma": "REAL",
    "scisql_abMagToNanojansky": "REAL",
    "scisql_abMagToNanojanskySigma": "REAL",
}
"""Every UDF in the library and its SQL return type (``CREATE FUNCTION`` spelling)."""

FUNCTION_NAMES: list[str] = list(FUNCTIONS)
"""The UDF names, exactly as exported by the library (case matters for ``SONAME`` lookup)."""

# mysql.func.ret -> CREATE FUNCTION return type
_RET_CODES = {0: "STRING", 1: "REAL", 2: "INTEGER", 4: "DECIMAL"}

_COMPILE_FLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden")

_HEADER_DIR_CANDIDATES = (
    "/usr/include/mariadb",
    "/usr/include/mysql",
    "/usr/local/include/mariadb",
    "/usr/local/include/mysql",
)

_MISSING_HEADERS_HELP = (
    "The MariaDB UDF headers (mysql.h defining UDF_INIT/UDF_ARGS) were not found{detail}. "
    "Install them with:\n"
    f"    sudo apt-get update && sudo apt-get install -y {HEADERS_PACKAGE}\n"
    "(on RPM systems: MariaDB-devel or mariadb-connector-c-devel)."
)

_MISSING_COMPILER_HELP = (
    "No C compiler was found (looked for $CC, gcc, cc). Install one with:\n"
    "    sudo apt-get update && sudo apt-get install -y gcc"
)


class ScisqlError(RuntimeError):
    """Base class of the errors raised here."""


class ScisqlBuildError(ScisqlError):
    """The shared library could not be compiled (missing compiler/headers, compile error)."""


class ScisqlInstallError(ScisqlError):
    """The library could not be copied into the plugin directory or registered."""


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def default_build_dir() -> Path:
    """Where :func:`build` caches the library when no directory is given.

    ``$SKYSHARD_SCISQL_BUILD_DIR`` if set, else ``build/`` next to the source
    when that is writable, else a per-user directory under the temp dir.
    """
    env = os.environ.get("SKYSHARD_SCISQL_BUILD_DIR")
    if env:
        return Path(env)
    local = SOURCE.parent / "build"
    if os.access(local if local.is_dir() else SOURCE.parent, os.W_OK):
        return local
    return Path(tempfile.gettempdir()) / f"skyshard-scisql-{os.getuid()}"


def _compiler() -> str:
    for candidate in (os.environ.get("CC"), "gcc", "cc"):
        if candidate:
            found = shutil.which(candidate)
            if found:
                return found
    raise ScisqlBuildError(_MISSING_COMPILER_HELP)


def _tool_flags(command: list[str]) -> list[str] | None:
    """The output of a ``*_config``/``pkg-config`` call, split, or None if it fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return shlex.split(result.stdout)


def _has_udf_api(include_dirs: list[Path]) -> bool:
    """True if ``mysql.h`` is in one of the directories and the UDF structs are declared."""
    if not any((d / "mysql.h").is_file() for d in include_dirs):
        return False
    for directory in include_dirs:
        for name in ("mysql.h", "mariadb_com.h", "mysql_com.h"):
            header = directory / name
            with contextlib.suppress(OSError):
                if header.is_file() and "UDF_INIT" in header.read_text(errors="replace"):
                    return True
    return False


def header_flags() -> list[str]:
    """Compiler flags (``-I...``) that make ``#include <mysql.h>`` find the UDF API.

    Tries ``mariadb_config --include``, ``mysql_config --include``,
    ``pkg-config --cflags libmariadb|mariadb|mysqlclient`` and finally the
    usual include directories.  Raises :class:`ScisqlBuildError` naming the
    package to install when none of them has the headers.
    """
    attempts: list[list[str]] = [
        ["mariadb_config", "--include"],
        ["mysql_config", "--include"],
        ["pkg-config", "--cflags", "libmariadb"],
        ["pkg-config", "--cflags", "mariadb"],
        ["pkg-config", "--cflags", "mysqlclient"],
    ]
    for command in attempts:
        flags = _tool_flags(command)
        if not flags:
            continue
        dirs = [Path(f[2:]) for f in flags if f.startswith("-I")]
        if _has_udf_api(dirs):
            return [f for f in flags if f.startswith("-I")]
    for candidate in _HEADER_DIR_CANDIDATES:
        directory = Path(candidate)
        if _has_udf_api([directory]):
            return [f"-I{directory}"]
    raise ScisqlBuildError(_MISSING_HEADERS_HELP.format(detail=""))


def _up_to_date(library: Path) -> bool:
    try:
        return library.stat().st_mtime >= SOURCE.stat().st_mtime
    except OSError:
        return False


def build(output_dir: Path | None = None, *, force: bool = False) -> Path:
    """Compile ``scisql.c`` into ``<output_dir>/libskyshard_scisql.so`` and return its path.

    The library is cached: it is rebuilt only when missing, older than
    ``scisql.c``, or when ``force`` is true.  ``output_dir`` defaults to
    :func:`default_build_dir`.  The compiler writes to a temporary file that
    then atomically replaces the library, so concurrent builds are safe.
    """
    out_dir = Path(output_dir) if output_dir is not None else default_build_dir()
    library = out_dir / LIBRARY_NAME
    if not force and _up_to_date(library):
        return library
    if not SOURCE.is_file():
        raise ScisqlBuildError(f"UDF source {SOURCE} is missing")
    compiler = _compiler()
    includes = header_flags()
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{LIBRARY_NAME}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    command = [compiler, *_COMPILE_FLAGS, *includes, str(SOURCE), "-o", str(tmp), "-lm"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            output = (result.stderr + result.stdout).strip()
            if "mysql.h" in output and "No such file" in output:
                raise ScisqlBuildError(
                    _MISSING_HEADERS_HELP.format(detail=f" by {shlex.join(command)}")
                )
            raise ScisqlBuildError(
                f"compiling {SOURCE.name} failed ({shlex.join(command)}):\n{output}"
            )
        tmp.chmod(0o755)
        os.replace(tmp, library)
    finally:
        tmp.unlink(missing_ok=True)
    return library


# ---------------------------------------------------------------------------
# Installing into a server
# ---------------------------------------------------------------------------


def plugin_dir(connection: Any) -> Path:
    """The server's ``@@plugin_dir`` (where ``CREATE FUNCTION ... SONAME`` looks)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@plugin_dir")
        row = cursor.fetchone()
    if not row or not row[0]:
        raise ScisqlInstallError("the server reported an empty @@plugin_dir")
    value = row[0]
    if isinstance(value, bytes):
        value = value.decode()
    return Path(str(value))


def _copy_if_different(library: Path, target: Path) -> bool:
    """Atomically place ``library`` at ``target`` unless identical; True if it was copied.

    The new file gets a new inode (copy + rename), so a server that has the
    old library mapped keeps running the old code safely.
    """
    if target.is_file() and filecmp.cmp(library, target, shallow=False):
        return False
    directory = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ScisqlInstallError(
            f"cannot write into the MariaDB plugin directory {directory} ({exc}). "
            "Run as a user that may write there (root for the system directory), or "
            "start the server with --plugin-dir=<a writable directory>."
        ) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(library, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, target)
    except OSError as exc:
        raise ScisqlInstallError(f"cannot install {library} as {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return True


def install_library(plugin_dir: Path, library: Path | None = None) -> Path:
    """Copy the library (built with :func:`build` unless given) into ``plugin_dir``.

    Does nothing when an identical file is already there.  Returns the
    installed path.  ``plugin_dir`` is the server's ``@@plugin_dir``
    (see :func:`plugin_dir`); the server must run on this machine.
    """
    source = Path(library) if library is not None else build()
    directory = Path(plugin_dir)
    if not directory.is_dir():
        raise ScisqlInstallError(f"MariaDB plugin directory {directory} does not exist")
    target = directory / LIBRARY_NAME
    _copy_if_different(source, target)
    return target


def installed_functions(connection: Any) -> dict[str, tuple[str, str]]:
    """Our UDFs registered on the server: name -> (return type, SONAME), from ``mysql.func``."""
    placeholders = ", ".join(["%s"] * len(FUNCTION_NAMES))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name, ret, dl FROM mysql.func WHERE name IN ({placeholders})",
            FUNCTION_NAMES,
        )
        rows = cursor.fetchall()
    found: dict[str, tuple[str, str]] = {}
    for name, ret, dl in rows:
        name = name.decode() if isinstance(name, bytes) else str(name)
        dl = dl.decode() if isinstance(dl, bytes) else str(dl)
        found[name] = (_RET_CODES.get(int(ret), str(ret)), dl)
    return found


def install_functions(connection: Any, *, replace: bool = False) -> None:
    """Register every UDF of :data:`FUNCTIONS` with ``CREATE FUNCTION ... SONAME``.

    Idempotent: ``CREATE FUNCTION IF NOT EXISTS`` is used, and a function
    that already exists is left alone unless it is bound to another library
    or return type (say a real scisql install), in which case it is dropped
    and re-created.  With ``replace=True`` every function is dropped and
    re-created, which makes the server load a changed library file (it keeps
    the old code mapped until the last function using it is dropped).  The
    library must already be in the server's plugin directory.  UDFs are
    global to the server, so this needs the INSERT/DELETE privileges on the
    ``mysql`` schema (root).
    """
    try:
        existing = installed_functions(connection)
    except Exception:  # no SELECT on mysql.func: rely on IF NOT EXISTS alone
        existing = {}
    with connection.cursor() as cursor:
        for name, returns in FUNCTIONS.items():
            current = existing.get(name)
            stale = current is not None and current != (returns, LIBRARY_NAME)
            if replace or stale:
                cursor.execute(f"DROP FUNCTION IF EXISTS {name}")
            try:
                cursor.execute(
                    f"CREATE FUNCTION IF NOT EXISTS {name} RETURNS {returns} "
                    f"SONAME '{LIBRARY_NAME}'"
                )
            except Exception as exc:
                raise ScisqlInstallError(
                    f"CREATE FUNCTION {name} ... SONAME '{LIBRARY_NAME}' failed: {exc}"
                ) from exc


def ensure_installed(connection: Any, *, build_dir: Path | None = None) -> Path:
    """Build if needed, install into ``@@plugin_dir`` if missing or different, register.

    Returns the path of the installed library.  When the file in the plugin
    directory had to be replaced, the functions are dropped and re-created so
    that this server loads the new code.  (Other servers sharing the same
    plugin directory keep the code they loaded until they are restarted or
    :func:`install_functions` is called on them with ``replace=True``.)
    """
    library = build(build_dir)
    directory = plugin_dir(connection)
    if not directory.is_dir():
        raise ScisqlInstallError(
            f"the server's plugin directory {directory} does not exist on this machine "
            "(is the server remote?)"
        )
    target = directory / LIBRARY_NAME
    changed = _copy_if_different(library, target)
    install_functions(connection, replace=changed)
    return target

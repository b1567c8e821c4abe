"""Users, passwords and grants as the czar enforces them.

Owns the czar's view of the users stored in css (a cache refreshed every
``ttl`` seconds, so ``skyshard user ...`` takes effect within that time),
MySQL native password authentication for the MySQL front end
(:class:`CssIdentityProvider`, a mysql-mimic identity provider), the same
check for HTTP Basic credentials (:meth:`UserDirectory.authenticate`), and
the access rules both front ends apply:

* a user reads a database only with a grant on it ('*' = every database);
  admins read everything;
* a user sees, fetches, cancels and kills only their own queries and
  connections; admins any.

Refusals are MySQL's errors: 1045 (bad credentials), 1044 (database),
1142 (table), 1095 (someone else's query or connection).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from collections.abc import Iterable

from mysql_mimic.auth import IdentityProvider, NativePasswordAuthPlugin
from mysql_mimic.auth import User as MimicUser
from sqlglot import exp

from css import Css, User
from css.api import password_hash
from czar.errors import AccessDenied, BadCredentials, DatabaseAccessDenied, NotOwner

# Unknown users get a hash no password has (hex SHA1 is 40 characters): the
# answer is then "access denied" exactly as for a wrong password.
_NO_PASSWORD_MATCHES = "!" * 40


class UserDirectory:
    """The users of css, cached for ``ttl`` seconds."""

    def __init__(self, css: Css, ttl: float = 1.0) -> None:
        self.css = css
        self.ttl = ttl
        self._users: dict[str, User] = {}
        self._loaded = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> User | None:
        if time.monotonic() - self._loaded > self.ttl:
            async with self._lock:
                if time.monotonic() - self._loaded > self.ttl:
                    users = await asyncio.to_thread(self.css.users)
                    self._users = {u.name: u for u in users}
                    self._loaded = time.monotonic()
        return self._users.get(name)

    async def authenticate(self, name: str, password: str) -> User:
        """Check a clear-text password (HTTP Basic) against the stored native password hash."""
        user = await self.get(name)
        if user is None or not _same(password_hash(password), user.auth_string):
            raise BadCredentials(f"Access denied for user '{name}' (using password: {'YES' if password else 'NO'})")
        return user


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class CssIdentityProvider(IdentityProvider):
    """mysql-mimic identity provider: mysql_native_password against the hashes in css."""

    def __init__(self, users: UserDirectory) -> None:
        self.users = users

    def get_plugins(self) -> list[NativePasswordAuthPlugin]:  # type: ignore[override]
        return [NativePasswordAuthPlugin()]

    async def get_user(self, username: str) -> MimicUser | None:
        user = await self.users.get(username)
        auth_string = user.auth_string if user is not None else _NO_PASSWORD_MATCHES
        return MimicUser(name=username, auth_string=auth_string, auth_plugin=NativePasswordAuthPlugin.name)


# -- access rules ------------------------------------------------------------------
def check_database(user: User, database: str) -> None:
    """USE / a connection's default database: 1044 unless granted (whether or not it exists)."""
    if database.lower() == "information_schema":
        return
    if not user.can_read(database):
        raise DatabaseAccessDenied(f"Access denied for user '{user.name}'@'%' to database '{database}'")


def check_statement(user: User, statement: exp.Expression, default_db: str | None) -> None:
    """Every table a SELECT names must be in a granted database (1142 otherwise)."""
    if user.is_admin:
        return
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        database = table.db or default_db
        if not database or (not table.db and table.name.lower() in ctes):
            continue  # the engine answers 1046 / resolves the CTE
        if database.lower() == "information_schema":
            continue
        if not user.can_read(database):
            raise AccessDenied(
                f"SELECT command denied to user '{user.name}'@'%' for table `{database}`.`{table.name}`"
            )


def visible_databases(user: User, names: Iterable[str]) -> list[str]:
    return [name for name in names if user.can_read(name)]


def check_owner(user: User, owner: str, what: str) -> None:
    """Someone else's query or connection: only admins may touch it."""
    if not user.is_admin and owner != user.name:
        raise NotOwner(f"You are not owner of {what}")


def owner_filter(user: User) -> str | None:
    """The user whose rows information_schema.queries/processlist show; None = all (admin)."""
    return None if user.is_admin else user.name


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``Authorization: Basic ...`` -> (user, password); None when absent or malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


__all__ = [
    "BadCredentials", "CssIdentityProvider", "DatabaseAccessDenied", "NotOwner", "UserDirectory",
    "basic_credentials", "check_database", "check_owner", "check_statement", "owner_filter", "visible_databases",
]

"""Who is signed in: a local store of scrypt-hashed passwords, or a trusted reverse proxy's user header.

Signing in says who someone is; whether they may act is the hospital config's list of
clinicians (`clinicians:`), checked on every action. The store is a JSON file
`{"users": {"dr-okafor": "scrypt$16384$8$1$<salt b64>$<hash b64>"}}`, written by
`wardflow board-user NAME`; a password is never stored or logged in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from pathlib import Path

from streams.exceptions import StreamsError

USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_N, _R, _P = 2**14, 8, 1  # scrypt cost (about 16 MiB, tens of ms: fine for a sign-in, slow for guessing)


class PasswordStoreError(StreamsError):
    """The password store cannot be read or written; the message names the file."""


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class PasswordStore:
    """The users file, re-read when it changes (adding a user needs no board restart)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._users: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._users, self._mtime = {}, None
            return self._users
        if mtime != self._mtime:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                users = data["users"]
                if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
                    raise ValueError("'users' must map user ids to hashes")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PasswordStoreError(f"password store {self.path} is unreadable: {exc}") from None
            self._users, self._mtime = users, mtime
        return self._users

    def check(self, user: str, password: str) -> bool:
        stored = self._load().get(user)
        if stored is None:
            hash_password(password)  # same work whether or not the user exists: no user enumeration by timing
            return False
        return verify_password(password, stored)

    def set_password(self, user: str, password: str) -> None:
        if not USER_ID.match(user):
            raise PasswordStoreError(f"user id {user!r} must be letters, digits and . _ @ - (at most 64)")
        if len(password) < 12:
            raise PasswordStoreError("a password must have at least 12 characters")
        users = dict(self._load())
        users[user] = hash_password(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"users": users}, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
        self._mtime = None

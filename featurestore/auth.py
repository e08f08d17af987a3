"""Who is calling: bearer tokens (stored hashed) and, optionally, JWTs from an OIDC provider (SPEC §8).

A token is ``fst_<id>_<secret>``: ``id`` (8 hex digits) names it in listings and revocations, ``secret``
is 32 random bytes. The token file (``access_control.tokens``, default ``.featurestore/tokens.json``,
written atomically with mode 0600) keeps only the SHA-256 of each token: a copy of the file lets nobody
in. A token is shown once, when it is created (``featurestore auth create``); it belongs to one
principal, may expire, and is refused from the moment it is revoked (the server re-reads the file when
it changes).

With ``access_control.jwt_public_key`` set, a bearer JWT signed by that key (RS*/ES*/PS*/EdDSA, as
``jwt_algorithms`` allows; ``exp`` required; ``iss``/``aud`` checked when configured) is accepted too:
its ``jwt_principal_claim`` (``sub``) names the principal, and its ``jwt_roles_claim`` (``roles``) lists
groups the policy maps to roles (:mod:`featurestore.access`).

Nothing here ever logs or returns a token: errors name the token's id at most.

>>> store = TokenStore(path)                         # doctest: +SKIP
>>> token, entry = store.create("growth-svc")        # doctest: +SKIP
>>> store.principal(token).name                      # doctest: +SKIP
'growth-svc'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from featurestore.errors import AccessError

TOKEN_RE = re.compile(r"^fst_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")
FORMAT = 1
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its name, how it proved it (``token:<id>`` or ``jwt``), and the groups
    its JWT carried (the policy maps them to roles)."""

    name: str
    via: str
    groups: Tuple[str, ...] = field(default=())


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_principal_name(name: str) -> str:
    if not isinstance(name, str) or not PRINCIPAL_RE.match(name):
        raise AccessError(f"principal {name!r}: use letters, digits and _ . @ : + - (at most 128, not starting "
                          "with a sign)")
    return name


class TokenStore:
    """The hashed bearer tokens of a project (see the module docstring). Safe to share between threads;
    re-reads the file when it changed on disk (a revocation by the CLI reaches a running server)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: Optional[Tuple[int, int, int]] = None
        self._entries: List[dict] = []

    # -- reading ---------------------------------------------------------------------------------------
    def _load(self) -> List[dict]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._entries = None, []
            return []
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return self._entries
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise AccessError(f"token file {self.path} is unreadable: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tokens"), list):
            raise AccessError(f"token file {self.path} is not a featurestore token file (format {FORMAT})")
        self._stamp, self._entries = stamp, data["tokens"]
        return self._entries

    def entries(self) -> List[dict]:
        """Every token's record (id, principal, created_at, expires_at, revoked_at, note): never a secret."""
        with self._lock:
            return [{k: v for k, v in e.items() if k != "sha256"} for e in self._load()]

    def principal(self, token: str, now: Optional[float] = None) -> Optional[Principal]:
        """The principal a presented token proves, or None (unknown, malformed, revoked or expired)."""
        m = TOKEN_RE.match(token or "")
        if not m:
            return None
        with self._lock:
            entries = self._load()
        digest = _hash(token)
        now = time.time() if now is None else now
        for e in entries:
            if e.get("id") == m.group(1) and hmac.compare_digest(str(e.get("sha256", "")), digest):
                if e.get("revoked_at") is not None:
                    return None
                if e.get("expires_at") is not None and now >= float(e["expires_at"]):
                    return None
                return Principal(e["principal"], f"token:{e['id']}")
        return None

    # -- writing (the CLI) -------------------------------------------------------------------------------
    def _write(self, entries: List[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"format": FORMAT, "tokens": entries}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, principal: str, expires_in_s: Optional[float] = None, note: str = "") -> Tuple[str, dict]:
        """A new token for ``principal``: (the token, shown once; its record)."""
        check_principal_name(principal)
        with self._lock:
            entries = list(self._load())
            ids = {e.get("id") for e in entries}
            tid = secrets.token_hex(4)
            while tid in ids:
                tid = secrets.token_hex(4)
            token = f"fst_{tid}_{secrets.token_urlsafe(32)}"
            now = time.time()
            entry = {"id": tid, "principal": principal, "sha256": _hash(token), "created_at": now,
                     "expires_at": now + expires_in_s if expires_in_s else None, "revoked_at": None, "note": note}
            self._write(entries + [entry])
            self._stamp = None
        return token, {k: v for k, v in entry.items() if k != "sha256"}

    def revoke(self, token_id: Optional[str] = None, principal: Optional[str] = None) -> List[str]:
        """Revoke one token by id, or every live token of ``principal``; returns the ids revoked. An id or
        principal with no live token is an AccessError naming it."""
        if (token_id is None) == (principal is None):
            raise AccessError("revoke needs a token id or a principal (not both)")
        with self._lock:
            entries = [dict(e) for e in self._load()]
            now = time.time()
            hit = [e for e in entries if (e.get("id") == token_id if token_id else e.get("principal") == principal)]
            if token_id is not None and not hit:
                known = ", ".join(e["id"] for e in entries) or "none"
                raise AccessError(f"no token with id '{token_id}' (known ids: {known})")
            live = [e for e in hit if e.get("revoked_at") is None]
            if not live:
                what = f"token '{token_id}'" if token_id else f"principal '{principal}'"
                raise AccessError(f"{what} has no live token to revoke")
            for e in live:
                e["revoked_at"] = now
            self._write(entries)
            self._stamp = None
        return [e["id"] for e in live]


class JwtVerifier:
    """Accepts JWTs signed by one configured public key (an OIDC provider's signing key, as PEM)."""

    def __init__(self, key_path: Path, algorithms: List[str], issuer: Optional[str], audience: Optional[str],
                 principal_claim: str = "sub", roles_claim: Optional[str] = "roles"):
        bad = [a for a in algorithms if a not in ASYMMETRIC]
        if bad or not algorithms:
            raise AccessError(f"access_control.jwt_algorithms: {', '.join(bad) or 'none given'} — only public-key "
                              f"algorithms verify against a public key ({', '.join(ASYMMETRIC)})")
        try:
            self.key = Path(key_path).read_bytes()
        except OSError as exc:
            raise AccessError(f"access_control.jwt_public_key: cannot read {key_path} ({exc.strerror})") from None
        try:
            import jwt
            from jwt.algorithms import get_default_algorithms

            algo = get_default_algorithms()[algorithms[0]]
            algo.prepare_key(self.key)  # refuse a file that is not a public key of that kind at start, not per call
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same user mistake
            raise AccessError(f"access_control.jwt_public_key: {key_path} is not a PEM public key for "
                              f"{algorithms[0]} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                              ) from None
        self._jwt = jwt
        self.algorithms, self.issuer, self.audience = list(algorithms), issuer, audience
        self.principal_claim, self.roles_claim = principal_claim, roles_claim

    def principal(self, token: str) -> Optional[Principal]:
        if token.count(".") != 2:
            return None
        options = {"require": ["exp"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])}
        try:
            claims = self._jwt.decode(token, self.key, algorithms=self.algorithms, issuer=self.issuer,
                                      audience=self.audience, options=options)
        except self._jwt.PyJWTError:
            return None
        name = claims.get(self.principal_claim)
        if not isinstance(name, str) or not name:
            return None
        groups = claims.get(self.roles_claim) if self.roles_claim else None
        if isinstance(groups, str):
            groups = groups.split()
        groups = tuple(str(g) for g in groups) if isinstance(groups, (list, tuple)) else ()
        return Principal(name, "jwt", groups)


class Authenticator:
    """Turns a presented bearer credential into a Principal (tokens first, then JWT), or None."""

    def __init__(self, tokens: TokenStore, jwt_verifier: Optional[JwtVerifier] = None):
        self.tokens, self.jwt = tokens, jwt_verifier

    @classmethod
    def for_config(cls, cfg) -> "Authenticator":
        ac = cfg.access
        verifier = None
        if ac.jwt_public_key:
            verifier = JwtVerifier(cfg.path(ac.jwt_public_key), [a.strip() for a in ac.jwt_algorithms.split(",")
                                                                 if a.strip()],
                                   ac.jwt_issuer, ac.jwt_audience, ac.jwt_principal_claim, ac.jwt_roles_claim)
        return cls(TokenStore(cfg.path(ac.tokens)), verifier)

    def principal(self, credential: Optional[str]) -> Optional[Principal]:
        if not credential:
            return None
        if credential.startswith("fst_"):
            return self.tokens.principal(credential)
        if self.jwt is not None:
            return self.jwt.principal(credential)
        return None


def bearer(headers: Dict[str, str]) -> Optional[str]:
    """The credential of an ``Authorization: Bearer <credential>`` header (case-insensitive scheme)."""
    value = headers.get("authorization", "")
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


__all__ = ["Principal", "TokenStore", "JwtVerifier", "Authenticator", "bearer", "check_principal_name"]

"""Access control on ``featurestore serve`` (docs/access-control.md): who is calling, and may they.

:class:`AccessGuard` sits in front of every route. With ``access_control.enabled`` it answers 401 to any
request without a valid credential — an ``Authorization: Bearer`` header (a token from ``featurestore auth
create`` or, when configured, an OIDC JWT) or, for GET/HEAD only, the ``featurestore_token`` cookie the
web catalog's login page sets (never for writes: a cookie would let another site's form act for a
logged-in user). Only the login page itself is open. Each route then asks :func:`require` (or the
helpers below) for the right it needs, which answers 403 without it. Credentials are never logged, echoed
or put in a URL.

With access control off (the default) every principal is ``None`` and every check passes.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from featurestore import access
from featurestore.auth import Authenticator, bearer
from featurestore.errors import AccessError, RequestError

COOKIE = "featurestore_token"
OPEN_PATHS = ("/ui/login", "/ui/logout")  # the login form and logging out need no credential
WWW_AUTHENTICATE = 'Bearer realm="featurestore"'


class Gate:
    """What the server knows about access: on or off, the authenticator and the (re-read) policy."""

    def __init__(self, store):
        cfg = store.config
        self.store = store
        self.enabled = cfg.access.enabled
        self.secure_cookie = bool(cfg.server.tls_cert)
        if self.enabled:
            self.authenticator = Authenticator.for_config(cfg)
            self.policy_file = access.PolicyFile(cfg.path(cfg.access.policy), store.repo)
        else:
            self.authenticator, self.policy_file = None, None

    @property
    def policy(self) -> access.Policy:
        return self.policy_file.current() if self.policy_file is not None else access.OPEN

    def principal(self, credential: Optional[str]):
        return self.authenticator.principal(credential) if self.enabled else None


class AccessGuard:
    """ASGI middleware: authenticates every HTTP request (see the module docstring)."""

    def __init__(self, app, gate: Gate, login_page: Callable[[str], str]):
        self.app, self.gate, self.login_page = app, gate, login_page

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.gate.enabled:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        credential = bearer(headers)
        if credential is None and scope.get("method") in ("GET", "HEAD"):
            credential = _cookie(headers.get("cookie", ""), COOKIE)
        try:
            principal = self.gate.principal(credential)
        except AccessError as exc:  # a broken token file: refuse everyone (fail closed), say why
            return await _send(send, 503, json.dumps({"detail": f"access control unavailable: {exc}"}).encode(),
                               b"application/json")
        scope.setdefault("state", {})["principal"] = principal
        if principal is not None or path in OPEN_PATHS:
            return await self.app(scope, receive, send)
        _label_route(scope)
        detail = "a valid bearer token is required (Authorization: Bearer <token>; see featurestore auth create)"
        if credential:
            detail = "the bearer token is not valid (unknown, revoked or expired)"
        if path.startswith("/ui") and scope.get("method") in ("GET", "HEAD"):
            return await _send(send, 401, self.login_page(path).encode(), b"text/html; charset=utf-8")
        return await _send(send, 401, json.dumps({"detail": detail}).encode(), b"application/json")


def _cookie(header: str, name: str) -> Optional[str]:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name and v:
            return v
    return None


def _label_route(scope) -> None:
    """Name the matching route in ``scope`` so /metrics counts a 401 under its route template."""
    from starlette.routing import Match

    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            scope["route"] = route
            return


async def _send(send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", WWW_AUTHENTICATE.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- rights, asked by the routes ------------------------------------------------------------------------------
def principal_of(request):
    return getattr(request.state, "principal", None)


def gate_of(request) -> Gate:
    return request.app.state.gate


def _forbid(principal, action: str, what: str):
    from fastapi import HTTPException

    raise HTTPException(status_code=403, detail=f"principal '{principal.name}' may not {action} {what}")


def require(request, action: str, obj: access.Obj) -> None:
    """403 unless the caller may do ``action`` on ``obj``."""
    principal = principal_of(request)
    if principal is not None and not gate_of(request).policy.allows(principal, action, obj):
        _forbid(principal, action, f"{obj.kind} '{obj.name}'" if obj.kind != "project" else "this project")


def require_project(request, action: str) -> None:
    require(request, action, access.project_obj(None, gate_of(request).store.config.project))


def require_lookup(request, selection, feature_service: Optional[str]) -> None:
    principal = principal_of(request)
    gate = gate_of(request)
    if principal is None or access.lookup_allowed(gate.store.repo, gate.policy, principal, selection,
                                                  feature_service):
        return
    what = f"feature service '{feature_service}'" if feature_service else \
        "feature view(s) " + ", ".join(f"'{v}'" for v in selection)
    _forbid(principal, "read_online", what)


def require_lookup_refs(request, features, feature_service: Optional[str]) -> None:
    """``read_online`` for a lookup of ``features`` or ``feature_service`` (see :func:`require_lookup`), its
    references resolved as the caller may learn about them (:func:`access.resolve_for`: an error never names
    a view, service or feature it may not see)."""
    principal = principal_of(request)
    if principal is None:
        return
    gate = gate_of(request)
    selection = access.resolve_for(gate.store.repo, gate.policy, principal, "read_online", features, feature_service)
    if feature_service is None or not may_use_service(request, feature_service):
        require_lookup(request, selection, feature_service)


def may_use_service(request, name: str) -> bool:
    """Whether the caller may look up through feature service ``name`` by a grant on the service itself."""
    principal = principal_of(request)
    if principal is None:
        return True
    repo = gate_of(request).store.repo
    return name in repo.services and gate_of(request).policy.allows(principal, "read_online",
                                                                     access.service_obj(repo, name))


def declare_bearer(app) -> None:
    """Say in the OpenAPI schema that every operation takes a bearer token (Swagger's Authorize button)."""
    from fastapi.openapi.utils import get_openapi

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "featurestore auth create, or a JWT"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def require_views(request, action: str, views) -> None:
    """403 unless the caller may ``action`` every view of ``views`` (None: every view of the project, and the
    refusal then names none of them: the caller named none). A view it may not know exists answers as an
    unknown one (a RequestError: no existence probe)."""
    repo = gate_of(request).store.repo
    principal = principal_of(request)
    policy = gate_of(request).policy
    if views is None:
        if principal is not None and not all(policy.allows(principal, action, access.view_obj(repo, v))
                                             for v in repo.views):
            _forbid(principal, action, "every feature view of this project (name the views it may)")
        return
    for v in views:
        if principal is not None and (v not in repo.views or not sees(request, action, "view", v)):
            raise access.unknown(repo, policy, principal, action, "view", v)
    for v in views:
        if v in repo.views:
            require(request, action, access.view_obj(repo, v))


def sees(request, action: str, kind: str, name: str) -> bool:
    """Whether the caller may know that the ``kind`` object ``name`` (which exists) exists: its metadata or
    ``action`` on it (access control off: yes)."""
    principal = principal_of(request)
    gate = gate_of(request)
    return principal is None or bool(access.visible_names(gate.store.repo, gate.policy, principal, action, kind,
                                                          [name]))


def require_push(request, source: str, views=None) -> None:
    """``push`` to a source: granted on the source, or on every view the rows reach (``views``: only those;
    default every view over the source). Refused, a source (or a view named) the caller may not know exists
    answers as an unknown one: push's "no source called", Feast's write's "no feature view called"."""
    principal = principal_of(request)
    gate = gate_of(request)
    repo = gate.store.repo
    if principal is None:
        return
    policy = gate.policy
    if source not in repo.sources:  # the push's one-line 400, suggesting only sources the caller may see
        from featurestore.push import no_source

        raise no_source(source, access.visible_names(repo, policy, principal, "push", "source", repo.sources))
    if policy.allows(principal, "push", access.source_obj(repo, source)):
        return
    reach = list(views) if views is not None else [n for n, v in repo.views.items() if v.source.name == source]
    if reach and all(policy.allows(principal, "push", access.view_obj(repo, v)) for v in reach):
        return
    if views is not None:  # named by the caller as views: the answer names them, not their source
        for v in views:
            if not sees(request, "push", "view", v):
                raise RequestError(f"no feature view called '{v}'")
        _forbid(principal, "push", "to feature view(s) " + ", ".join(f"'{v}'" for v in views))
    if not sees(request, "push", "source", source):
        from featurestore.push import no_source

        raise no_source(source, access.visible_names(repo, policy, principal, "push", "source", repo.sources))
    _forbid(principal, "push", f"to source '{source}'")


def can_read(request, obj: access.Obj) -> bool:
    principal = principal_of(request)
    return principal is None or gate_of(request).policy.allows(principal, "read_metadata", obj)


__all__ = ["Gate", "AccessGuard", "COOKIE", "require", "may_use_service", "declare_bearer", "require_project",
           "require_lookup", "require_lookup_refs", "require_views", "require_push", "principal_of", "gate_of",
           "can_read", "sees"]

"""The web catalog's routes (``/ui/...``) on ``featurestore serve``; pages in :mod:`featurestore.ui`.

With access control on, a browser logs in once at ``/ui/login`` with its token, which is kept in an
HttpOnly, SameSite=Strict cookie (Secure over HTTPS) that the server accepts for GET requests only; every
page shows only what the principal may read (``read_metadata``), and an object it may not read is a 404
like one that does not exist.
"""

# no "from __future__ import annotations": FastAPI resolves the parameter types from the annotations

from typing import Optional
from urllib.parse import parse_qs, quote

from featurestore import ui


def _safe_next(value: Optional[str]) -> str:
    """Only a path of this catalog: never an open redirect to another site."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def login_page(path: str = "/ui/", error: str = "", project: str = "") -> str:
    return ui.render("login.html", title="log in", project=project, principal=None, next=_safe_next(path),
                     error=error)


def add_routes(app, store) -> None:
    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse

    from featurestore import server_auth
    from featurestore.ui import pages

    project = store.config.project

    @app.get("/ui/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(next: Optional[str] = None):
        return HTMLResponse(login_page(next or "/ui/", project=project))

    @app.post("/ui/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request):
        gate = server_auth.gate_of(request)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/ui/"])[0])
        if not gate.enabled:
            return RedirectResponse(target, status_code=303)
        if gate.principal(token) is None:
            return HTMLResponse(login_page(target, "That token is not valid (unknown, revoked or expired).", project),
                                status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(server_auth.COOKIE, token, httponly=True, samesite="strict", secure=gate.secure_cookie,
                            path="/")
        return response

    @app.get("/ui/logout", include_in_schema=False)
    def logout():
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(server_auth.COOKIE, path="/")
        return response

    pages.add_routes(app, store)


__all__ = ["add_routes", "login_page", "quote"]

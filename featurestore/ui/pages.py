"""The catalog's pages (routes under ``/ui/``)."""

# no "from __future__ import annotations": FastAPI resolves the parameter types from the annotations

from typing import Optional


def add_routes(app, store) -> None:
    from fastapi import Request
    from fastapi.responses import HTMLResponse

    from featurestore import server_admin, server_auth, ui

    @app.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request):
        rows = server_admin.visible_records(store, request)
        who = server_auth.principal_of(request)
        return HTMLResponse(ui.render("index.html", title="catalog", project=store.config.project,
                                      principal=who.name if who else None, rows=rows))


__all__ = ["add_routes", "Optional"]

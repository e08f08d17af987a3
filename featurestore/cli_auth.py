"""``featurestore auth ...``: bearer tokens and the access policy (docs/access-control.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from featurestore.cli_common import JsonOpt, RepoOpt, _run, _store, _wide, console, err

auth_app = typer.Typer(no_args_is_help=True, help="Bearer tokens and the access policy of `featurestore serve`.")


def _tokens(store):
    from featurestore.auth import TokenStore

    return TokenStore(store.config.path(store.config.access.tokens))


def _policy(store, required: bool = False):
    from featurestore import access

    path = store.config.path(store.config.access.policy)
    if not path.exists() and not required:
        return None
    return access.load_policy(path, store.repo)


def _when(ts) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts)))


@auth_app.command("create")
def create(
    principal: str = typer.Argument(..., help="Who the token is for (a person or a service account)."),
    repo: Optional[Path] = RepoOpt,
    expires: Optional[str] = typer.Option(None, help="Lifetime, e.g. 90d or 12h (default: until revoked)."),
    note: str = typer.Option("", help="A note kept with the token (what it is for)."),
):
    """Create a bearer token for PRINCIPAL. The token is printed once: only its hash is kept."""

    def go():
        from featurestore.model.durations import parse_duration

        store = _store(repo)
        lifetime = parse_duration(expires, "--expires") / 1000 if expires else None
        token, entry = _tokens(store).create(principal, lifetime, note)
        policy = _policy(store)
        roles = policy.principals.get(principal, ()) if policy is not None else ()
        console.print(f"token {entry['id']} for principal '{principal}'"
                      + (f", expires {_when(entry['expires_at'])}" if entry["expires_at"] else ""), markup=False)
        print(token)  # plain stdout: a script can capture it; shown this once only
        if not roles:
            err.print(f"note: '{principal}' holds no role in {store.config.access.policy} yet: the token "
                      "authenticates but grants nothing", markup=False)
        if not store.config.access.enabled:
            err.print("note: access control is off (access_control.enabled: false): the server does not ask for "
                      "tokens", markup=False)

    _run(go, repo)


@auth_app.command("list")
def list_tokens(repo: Optional[Path] = RepoOpt, as_json: bool = typer.Option(False, "--json", help="JSON for scripts.")):
    """List the tokens (id, principal, created, expires, revoked): never the tokens themselves."""

    def go():
        store = _store(repo)
        rows = _tokens(store).entries()
        policy = _policy(store)
        for r in rows:
            r["roles"] = list(policy.principals.get(r["principal"], ())) if policy is not None else []
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table(title=f"tokens ({len(rows)})")
        for c in ("id", "principal", "roles", "created", "expires", "revoked", "note"):
            table.add_column(c)
        for r in rows:
            table.add_row(r["id"], r["principal"], ", ".join(r["roles"]), _when(r["created_at"]),
                          _when(r["expires_at"]), _when(r["revoked_at"]), r.get("note") or "")
        _wide().print(table)

    _run(go, repo)


@auth_app.command("revoke")
def revoke(
    token_id: Optional[str] = typer.Argument(None, help="The token's id (featurestore auth list)."),
    repo: Optional[Path] = RepoOpt,
    principal: Optional[str] = typer.Option(None, help="Revoke every live token of this principal instead."),
):
    """Revoke a token (or all of a principal's): a running server refuses it from its next request."""

    def go():
        ids = _tokens(_store(repo)).revoke(token_id, principal)
        console.print(f"revoked {', '.join(ids)}")

    _run(go, repo)


@auth_app.command("check")
def check(
    repo: Optional[Path] = RepoOpt,
    principal: Optional[str] = typer.Option(None, help="Show what this principal may do, object by object."),
    group: Optional[list[str]] = typer.Option(None, help="JWT groups the principal carries (repeatable)."),
    as_json: bool = JsonOpt,
):
    """Check the policy file against the definitions (every problem at once) and show who holds which
    role, or with --principal, the actions it has on every object."""

    def go():
        from featurestore import access
        from featurestore.auth import Principal
        from featurestore.cli_support import print_json

        store = _store(repo)
        policy = _policy(store, required=True)
        repo_ = store.repo
        if principal is None and as_json:
            print_json({"policy": str(store.config.access.policy), "ok": True,
                        "principals": {who: list(roles) for who, roles in policy.principals.items()},
                        "groups": {who: list(roles) for who, roles in policy.groups.items()}})
            return
        if principal is None:
            table = Table(title=f"roles in {store.config.access.policy}")
            for c in ("principal / group", "roles"):
                table.add_column(c)
            for who, roles in policy.principals.items():
                table.add_row(who, ", ".join(roles))
            for who, roles in policy.groups.items():
                table.add_row(f"group {who}", ", ".join(roles))
            _wide().print(table)
            console.print("policy ok")
            return
        who = Principal(principal, "check", tuple(group or ()))
        objs = [access.project_obj(repo_, store.config.project)]
        objs += [access.entity_obj(repo_, n) for n in repo_.entities]
        objs += [access.source_obj(repo_, n) for n in repo_.sources]
        objs += [access.view_obj(repo_, n) for n in repo_.views]
        objs += [access.service_obj(repo_, n) for n in repo_.services]
        if as_json:
            print_json({"principal": principal, "groups": list(group or ()), "roles": list(policy.roles_of(who)),
                        "objects": [{"kind": o.kind, "name": o.name,
                                     "actions": {a: policy.allows(who, a, o) for a in access.ACTIONS}} for o in objs]})
            return
        table = Table(title=f"what '{principal}' may do (roles: {', '.join(policy.roles_of(who)) or 'none'})")
        table.add_column("object")
        for a in access.ACTIONS:
            table.add_column(a, justify="center")
        for o in objs:
            table.add_row(f"{o.kind} {o.name}", *("yes" if policy.allows(who, a, o) else "-" for a in access.ACTIONS))
        _wide().print(table)

    _run(go, repo)


__all__ = ["auth_app"]

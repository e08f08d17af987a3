"""The drift section of a service's catalog page (filled in by featurestore.drift)."""

from __future__ import annotations


def for_page(store, request, rec: dict, services) -> None:
    return None

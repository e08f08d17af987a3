"""Automatic full garbage collections are held off while an online lookup runs (featurestore.sdk.gc_pause),
and the interpreter's settings always come back."""

import gc
import threading

import pytest

from featurestore.sdk import gc_pause
from featurestore.sdk.gc_pause import no_full_collections

PAUSED = 1_000_000_000


@pytest.fixture(autouse=True)
def _thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)
    assert gc_pause._STATE["active"] == 0


def test_a_pause_raises_the_youngest_and_oldest_generations_and_puts_them_back():
    with no_full_collections():
        assert gc.get_threshold() == (gc_pause.LOOKUP_YOUNG, 10, PAUSED)
    assert gc.get_threshold() == (700, 10, 10)
    gc.set_threshold(50_000, 10, 10)  # a caller's larger young threshold is never lowered
    with no_full_collections():
        assert gc.get_threshold() == (50_000, 10, PAUSED)
    gc.set_threshold(700, 10, 10)
    with pytest.raises(ZeroDivisionError):  # an error inside gives the settings back too
        with no_full_collections():
            1 / 0
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_lookups_share_one_pause_until_the_last_ends():
    entered, release = threading.Barrier(2), threading.Event()

    def other():
        with no_full_collections():
            entered.wait(10)
            release.wait(10)

    th = threading.Thread(target=other)
    with no_full_collections():
        th.start()
        entered.wait(10)
    assert gc.get_threshold() == (gc_pause.LOOKUP_YOUNG, 10, PAUSED)  # the other lookup still runs
    release.set()
    th.join(10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_pause_never_outlasts_its_bound_while_lookups_keep_overlapping(monkeypatch):
    monkeypatch.setattr(gc_pause, "MAX_PAUSE_S", 0.0)
    outer = no_full_collections()
    outer.__enter__()
    with no_full_collections():
        pass
    assert gc.get_threshold() == (700, 10, 10)  # bound passed: put back although one still runs
    with no_full_collections():  # and no new pause until a moment without a lookup
        assert gc.get_threshold() == (700, 10, 10)
    outer.__exit__(None, None, None)
    with no_full_collections():
        assert gc.get_threshold() == (gc_pause.LOOKUP_YOUNG, 10, PAUSED)


def test_a_callers_own_settings_are_left_alone():
    gc.disable()
    try:
        with no_full_collections():
            assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.enable()
    with no_full_collections():
        gc.set_threshold(500, 5, 5)  # changed meanwhile: kept
    assert gc.get_threshold() == (500, 5, 5)


def test_an_online_lookup_runs_inside_a_pause(monkeypatch):
    from featurestore.sdk import online_lookup

    seen = []
    monkeypatch.setattr(online_lookup, "_lookup", lambda *a: seen.append(gc.get_threshold()[2]) or "response")
    assert online_lookup.lookup(None, [{"k": 1}]) == "response"
    assert seen == [PAUSED] and gc.get_threshold() == (700, 10, 10)


def test_a_lookup_inside_an_online_operator_keeps_the_operators_hold():
    """One piece of code for both (the stream job's operator holds full collections off for its life): a
    lookup ending while an operator runs must not give the settings back, nor the operator's close while
    a lookup still runs."""
    frozen = gc.get_freeze_count()
    gc_pause.hold()
    try:
        assert gc.get_threshold() == (700, 10, PAUSED) and gc.get_freeze_count() >= frozen
        with no_full_collections():
            pass
        assert gc.get_threshold() == (700, 10, PAUSED)
        with no_full_collections():
            gc_pause.release()
            assert gc.get_threshold() == (700, 10, PAUSED)  # the lookup still runs
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        if gc_pause._STATE["operators"]:
            gc_pause.release()
    assert gc_pause._STATE["operators"] == 0

"""Shared fixtures of the unit tests."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def sandbox():
    """Autograde's bubblewrap sandbox: the test is skipped without it, or fails with KARPA_REQUIRE_SANDBOX=1 (CI)."""
    import os

    from karpa_lab.autograde.sandbox import sandbox_problem

    problem = sandbox_problem()
    if problem and os.environ.get("KARPA_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"KARPA_REQUIRE_SANDBOX=1 and no sandbox: {problem}")
    if problem:
        pytest.skip(problem)

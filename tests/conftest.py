"""One moto server for the whole session; every test builds its own organization on it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from keyrotation.emulator.server import running_emulator
from tests.faults import Faults, patch_product_clients
from tests.mailserver import Certificates, make_certificates
from tests.orgs import OrgBuilder


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    with running_emulator() as endpoint:
        yield endpoint


@pytest.fixture
def org(emulator: str, tmp_path) -> OrgBuilder:
    return OrgBuilder(outbox=tmp_path / "outbox")


@pytest.fixture(autouse=True)
def _keyrotation_logs(caplog) -> None:
    """Let caplog see keyrotation's events, whatever an earlier CLI run configured."""
    logger = logging.getLogger("keyrotation")
    logger.handlers.clear()
    logger.propagate = True
    caplog.set_level(logging.INFO, logger="keyrotation")


@pytest.fixture
def faults(monkeypatch) -> Faults:
    """Faults on every AWS call the product makes during the test."""
    injected = Faults()
    patch_product_clients(monkeypatch, injected)
    return injected


@pytest.fixture
def iam_hooks(monkeypatch) -> list:
    """Botocore event hooks put on every client the product makes, e.g. to change state
    between two of its calls. The calls still go over HTTP to moto's server."""
    hooks: list = []

    class Hooks:
        def attach(self, client):
            for event, handler in hooks:
                client.meta.events.register(event, handler)

    patch_product_clients(monkeypatch, Hooks())
    return hooks


@pytest.fixture(autouse=True)
def _history_in_tmp(monkeypatch, tmp_path) -> None:
    """CLI runs in tests append their history here, never to the user's home."""
    monkeypatch.setenv("KEYROTATION_HISTORY", str(tmp_path / "cli-history.jsonl"))


@pytest.fixture
def certificates(tmp_path, monkeypatch) -> Certificates:
    """A test CA and a server certificate for 127.0.0.1, trusted through SSL_CERT_FILE as an
    operator trusts a private CA, for the local SMTP server of tests/mailserver.py."""
    made = make_certificates(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(made.ca_file))
    return made

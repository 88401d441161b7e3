"""One moto server for the whole session; every test builds its own organization on it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from keyrotation.emulator.server import running_emulator
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
    logger.propagate = True
    caplog.set_level(logging.INFO, logger="keyrotation")

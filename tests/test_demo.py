"""The demo end to end, and the promise that no secret access key is ever written anywhere."""

from __future__ import annotations

from moto.iam.models import iam_backends
from typer.testing import CliRunner

from keyrotation.cli import app


def every_secret_access_key() -> set[str]:
    """Every secret access key the emulator holds, across all accounts."""
    return {
        key.secret_access_key
        for account in iam_backends.values()
        for backend in account.values()
        for key in backend.access_keys.values()
    }


def test_demo_runs_checks_itself_and_writes_no_secret_anywhere(tmp_path):
    before = every_secret_access_key()

    result = CliRunner().invoke(app, ["demo", "--verbose", "--outbox", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and result.output.count("PASS") >= 5
    emails = [e for e in tmp_path.rglob("*.html") if e.name != "compliance-report.html"]
    assert len(emails) >= 6
    assert f"\n{len(emails)} emails written to" in result.output
    assert any("Rotated key" in e.read_text() for e in emails)
    assert any("Deactivated key" in e.read_text() for e in emails)
    assert any("Deleted key" in e.read_text() for e in emails)
    for reason in ("KEY_HELD_IN_USE", "MAX_HOLD_PERIOD_END", "REPLACEMENT_IN_USE"):
        assert any(reason in e.read_text() for e in emails), reason

    created = every_secret_access_key() - before
    assert len(created) > 20, "the demo rotates keys, so it must have created secrets"
    assert "rotate account=" in result.output, "the log lines are part of what is searched"
    history = list(tmp_path.rglob("history.jsonl"))
    (report,) = tmp_path.rglob("compliance-report.html")
    assert "Compliance report (open in a browser)" in result.output
    assert history and "EXPIRED_ACTIVE_KEY" in history[0].read_text()
    written = [result.output, *(e.read_text() for e in [*emails, *history, report])]
    leaks = [secret for secret in created if any(secret in text for text in written)]
    assert leaks == []

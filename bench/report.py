"""Time the compliance report against one audit scan over the same organization.

    .venv/bin/python bench/report.py [--accounts 10] [--users 1000]

The organization is built on moto's server, in this process, on a loopback port. Its accounts
are made through the API; users and keys are written straight into moto's in-process IAM
backends, which is much faster and is not timed. Both timed runs go over HTTP to the server,
as the CLI would go to AWS.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime, timedelta

import boto3
from moto.iam.models import AccessKeyLastUsed, iam_backends

from keyrotation.compliance.render import to_html
from keyrotation.compliance.standing import assess
from keyrotation.emulator.server import running_emulator
from keyrotation.inventory import read_organization
from keyrotation.pipeline import RunContext, run_organization
from keyrotation.settings import Settings


def build(accounts: int, users: int, now: datetime) -> boto3.Session:
    session = boto3.Session(region_name="us-east-1")
    organizations = session.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    for n in range(accounts):
        status = organizations.create_account(
            AccountName=f"bench-{n:02d}", Email=f"bench-{n:02d}@example.com"
        )["CreateAccountStatus"]
        backend = iam_backends[status["AccountId"]]["global"]
        for u in range(users):
            name = f"user-{u:04d}"
            backend.create_user("us-east-1", name)
            key = backend.create_access_key(name)
            key.create_date = now - timedelta(days=(u * 7 + n) % 120)
            if u % 9:
                key.last_used = AccessKeyLastUsed(now - timedelta(days=u % 5), "sts", "us-east-1")
    return session


def timed(label: str, work):
    started = time.perf_counter()
    result = work()
    print(f"{label:<34} {time.perf_counter() - started:7.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("keyrotation").setLevel(logging.ERROR)
    settings = Settings()  # audit mode
    now = datetime.now(UTC)

    with running_emulator():
        print(f"building {args.accounts} accounts of {args.users} users (not timed)...")
        session = build(args.accounts, args.users, now)
        scan = timed(
            "audit scan (run_organization)",
            lambda: run_organization(session, RunContext(settings, now), notifier=None),
        )
        inventory = timed(
            "report: read the organization", lambda: read_organization(session, settings)
        )
        assessment = timed(
            "report: standings and next steps",
            lambda: assess(inventory.users, settings.periods, now),
        )
        page = timed(
            "report: HTML page",
            lambda: to_html(assessment, inventory.accounts, inventory.errors),
        )
    users = sum(a.users_scanned for a in scan.accounts)
    print(
        f"{users} users scanned, {len(assessment.rows)} keys reported, page {len(page) // 1024} KiB"
    )


if __name__ == "__main__":
    main()

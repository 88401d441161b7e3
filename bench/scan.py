"""Benchmark: the audit scan through the credential report against the per-user scan.

Starts moto's server in this process on a loopback port, builds N accounts of M users, times
one audit run each way and prints the API calls by operation, calls per account, wall seconds,
peak memory and the ratios; then the growth of the report path from 100 to 10,000 users.

    .venv/bin/python bench/scan.py                      # 10 accounts x 1,000 users, then growth
    .venv/bin/python bench/scan.py --accounts 3 --users 200 --sizes 100,1000

Building the organization is not timed. Peak memory is what tracemalloc saw allocated during
the scan, in a second run of the same scan (tracemalloc slows Python down, so the timed run
goes without it); it includes moto's own work for the requests, since the server runs here.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import boto3
from moto.iam.models import AccessKeyLastUsed, IAMBackend, iam_backends

from keyrotation.aws import session as aws_session
from keyrotation.emulator.sample import add_account, new_management_session
from keyrotation.emulator.server import running_emulator
from keyrotation.pipeline import RunContext, run_organization
from keyrotation.settings import Settings

ACTION_SHARE = 0.02  # an expired, used key: ROTATE
WARNING_SHARE = 0.05  # a key within the warning period: WARN
PARTITION = "aws"


@dataclass
class Measure:
    calls: Counter
    seconds: float
    peak_bytes: int
    accounts: int
    actions: int
    users: int

    @property
    def member_calls(self) -> int:
        """Calls made in the member accounts: all but the one organization listing."""
        return sum(n for op, n in self.calls.items() if not op.startswith("organizations:"))

    @property
    def per_account(self) -> float:
        return self.member_calls / self.accounts


class CallCounter:
    """Counts every API call of every client the product makes, from any thread."""

    def __init__(self):
        self.calls: Counter = Counter()
        self._lock = threading.Lock()
        self._real = aws_session.client

    def install(self) -> None:
        def counted_client(*args, **kwargs):
            made = self._real(*args, **kwargs)
            made.meta.events.register("before-call", self._count)
            return made

        for module in list(sys.modules.values()):
            ours = module is not None and module.__name__.startswith("keyrotation")
            if ours and getattr(module, "client", None) is self._real:
                module.client = counted_client

    def _count(self, model, **kwargs) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}:{model.name}"] += 1


def fast_last_used_lookup() -> None:
    """moto's GetAccessKeyLastUsed walks every key of every account on each call, which makes
    the per-user path quadratic in moto only. Look the key up by id instead, as AWS would."""

    def get_access_key_last_used(self, access_key_id: str):
        for backend in iam_backends.values():
            key = backend[self.partition].access_keys.get(access_key_id)
            if key is not None:
                return {"user_name": key.user_name, "last_used": key.last_used}
        return IAMBackend.__dict__["_slow_last_used"](self, access_key_id)

    IAMBackend._slow_last_used = IAMBackend.get_access_key_last_used
    IAMBackend.get_access_key_last_used = get_access_key_last_used


def build_organization(
    accounts: int, users: int, due: bool, now: datetime
) -> tuple[boto3.Session, list[str]]:
    """Accounts through the Organizations API; users and keys straight into moto's in-process
    IAM backend, because 10,000 users through the HTTP API take minutes per account."""
    management = new_management_session()
    account_ids = []
    for n in range(accounts):
        account = add_account(management, f"bench-{n:02d}", f"bench-{n:02d}@example.com")
        iam = iam_backends[account.account_id][PARTITION]
        for u in range(users):
            _add_user(iam, f"user-{u:05d}", _age(u, users, due), now)
        account_ids.append(account.account_id)
    return management, account_ids


def _age(index: int, users: int, due: bool) -> int:
    """Key age in days: the first 2% expired, the next 5% in their warning period, the rest
    young, spread over 10 to 79 days."""
    if due and index < users * ACTION_SHARE:
        return 95
    if due and index < users * (ACTION_SHARE + WARNING_SHARE):
        return 86
    return 10 + index % 70


def _add_user(iam, name: str, age: int, now: datetime) -> None:
    iam.create_user("us-east-1", name)
    key = iam.create_access_key(name)
    key.create_date = now - timedelta(days=age)
    key.last_used = AccessKeyLastUsed(now - timedelta(days=1), "sts", "us-east-1")


def scan(management, account_ids: list[str], method: str, now: datetime, memory: bool):
    settings = Settings(ScanMethod=method, DryRunFlag=True)
    context = RunContext(settings, now)
    counter = CallCounter()
    counter.install()
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    report = run_organization(management, context, None, account_ids)
    seconds = time.perf_counter() - started
    peak = 0
    if memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    _uninstall(counter)
    assert report.clean, [a.errors for a in report.accounts]
    return Measure(
        calls=counter.calls,
        seconds=seconds,
        peak_bytes=peak,
        accounts=len(account_ids),
        actions=sum(len(a.outcomes) for a in report.accounts),
        users=sum(a.users_scanned for a in report.accounts),
    ), report


def _uninstall(counter: CallCounter) -> None:
    for module in list(sys.modules.values()):
        ours = module is not None and module.__name__.startswith("keyrotation")
        if ours and getattr(getattr(module, "client", None), "__name__", "") == "counted_client":
            module.client = counter._real


def measured(management, account_ids, method, now) -> tuple[Measure, object]:
    timed, report = scan(management, account_ids, method, now, memory=False)
    traced, _ = scan(management, account_ids, method, now, memory=True)
    timed.peak_bytes = traced.peak_bytes
    return timed, report


def plan_of(report) -> list:
    return [
        (a.account.account_id, o.user, o.action.kind, o.action.reason, o.action.on)
        for a in report.accounts
        for o in a.outcomes
    ]


def print_measure(title: str, m: Measure) -> None:
    print(f"\n{title}")
    for operation, count in sorted(m.calls.items()):
        print(f"  {operation:40} {count:>8}")
    print(f"  {'calls per account':40} {m.per_account:>8.1f}")
    print(f"  {'wall seconds':40} {m.seconds:>8.2f}")
    print(f"  {'peak memory (MB, tracemalloc)':40} {m.peak_bytes / 2**20:>8.1f}")
    print(f"  {'users scanned / actions and warnings':40} {m.users:>8} / {m.actions}")


def reset(endpoint: str) -> None:
    """Drop every account of the previous size from moto, so sizes do not add up."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--users", type=int, default=1000, help="users per account")
    parser.add_argument("--sizes", default="100,1000,10000", help="users per account, growth")
    parser.add_argument(
        "--per-user-max",
        type=int,
        default=100,
        help="largest size at which the growth table also runs the per-user path (slow)",
    )
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with running_emulator() as endpoint:
        fast_last_used_lookup()
        print(f"{args.accounts} accounts x {args.users} users, 2% due for an action, 5% for a")
        print("warning; audit mode; building the organization (not timed)...")
        management, ids = build_organization(args.accounts, args.users, True, now)
        report_path, by_report = measured(management, ids, "report", now)
        per_user_path, by_user = measured(management, ids, "per-user", now)
        print_measure("credential report path", report_path)
        print_measure("per-user path", per_user_path)
        print("\nratios, per-user path / report path")
        print(f"  calls  {per_user_path.member_calls / report_path.member_calls:8.1f}x")
        print(f"  wall   {per_user_path.seconds / report_path.seconds:8.1f}x")
        print(f"  memory {per_user_path.peak_bytes / max(report_path.peak_bytes, 1):8.1f}x")
        due = report_path.actions
        print(
            f"  report path: {report_path.per_account:.1f} calls per account for "
            f"{due / args.accounts:.0f} due users per account"
        )
        print(f"  same plan both ways: {plan_of(by_report) == plan_of(by_user)}")

        print(f"\ngrowth, {args.accounts} accounts, no user due (calls per account, s, MB)")
        print(f"  {'users':>7} {'report':>26} {'per-user':>26}")
        for size in (int(s) for s in args.sizes.split(",")):
            reset(endpoint)
            management, ids = build_organization(args.accounts, size, False, now)
            by_report, _ = measured(management, ids, "report", now)
            row = f"  {size:>7} {_cells(by_report):>26}"
            if size <= args.per_user_max:
                per_user, _ = measured(management, ids, "per-user", now)
                row += f" {_cells(per_user):>26}"
            else:
                row += f" {'not run (too slow)':>26}"
            print(row, flush=True)


def _cells(m: Measure) -> str:
    return f"{m.per_account:8.1f} {m.seconds:8.2f} {m.peak_bytes / 2**20:7.1f}"


if __name__ == "__main__":
    main()

"""The command line: run, history, report and forecast against AWS; demo on the emulator."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from botocore.exceptions import BotoCoreError, NoCredentialsError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from keyrotation import logs
from keyrotation.aws.session import base_session
from keyrotation.compliance.render import to_csv, to_html, to_json
from keyrotation.compliance.standing import Assessment, Standing, assess
from keyrotation.errors import InputError, KeyRotationError, SettingsError
from keyrotation.forecast import Apps, forecast
from keyrotation.history.event import HistoryFilter
from keyrotation.history.local import DEFAULT_FILE, HistoryFile
from keyrotation.history.s3 import S3History
from keyrotation.inventory import read_organization
from keyrotation.model import ActionKind, Mode
from keyrotation.notify.deliver import deliver
from keyrotation.notify.message import Notification
from keyrotation.notify.render import PACKAGE_TEMPLATES, check_syntax, load_local
from keyrotation.notify.senders import OutboxSender, mail_sender
from keyrotation.notify.unsent import FolderStore
from keyrotation.pipeline import Notifier, RunContext, run_organization
from keyrotation.report import RunReport
from keyrotation.settings import Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

HistoryOption = Annotated[
    Path,
    typer.Option(
        "--history",
        envvar="KEYROTATION_HISTORY",
        help="JSON Lines file the run's events are appended to.",
    ),
]
ConfigOption = Annotated[Path | None, typer.Option(help="TOML or JSON file of settings.")]
SettingOption = Annotated[
    list[str], typer.Option("--set", help="Override a setting: NAME=VALUE (repeatable).")
]
AccountOption = Annotated[
    list[str], typer.Option("--account", help="Only this account id (repeatable).")
]
STANDING_STYLE = {
    Standing.COMPLIANT: "green",
    Standing.DUE_SOON: "yellow",
    Standing.OVERDUE: "red",
    Standing.UNUSED: "dark_orange",
    Standing.EXEMPT: "cyan",
}


def main() -> None:
    try:
        app()
    except (KeyRotationError, NoCredentialsError, BotoCoreError) as exc:
        # emoji=False: an ARN's ":secret:" would otherwise print as an emoji.
        err.print(
            f"error: {exc}", style="red", markup=False, highlight=False, emoji=False, soft_wrap=True
        )
        sys.exit(2)


@app.command()
def run(
    enforce: Annotated[
        bool | None,
        typer.Option(
            "--enforce/--dry-run", help="Change keys, or only report (default: DryRunFlag)."
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Evaluate as if today were DATE (YYYY-MM-DD).")
    ] = None,
    force_rotate: Annotated[
        list[str], typer.Option("--force-rotate", help="Rotate this user's key now (repeatable).")
    ] = [],  # noqa: B006
    account: Annotated[
        list[str], typer.Option("--account", help="Run only this account id (repeatable).")
    ] = [],  # noqa: B006
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: Annotated[Path | None, typer.Option(help="TOML or JSON file of settings.")] = None,
    setting: Annotated[
        list[str],
        typer.Option("--set", metavar="NAME=VALUE", help="Override a setting (repeatable)."),
    ] = [],  # noqa: B006
    outbox: Annotated[
        Path | None, typer.Option(help="Write emails as .html files here instead of sending them.")
    ] = None,
    template_dir: Annotated[
        Path | None, typer.Option(help="Folder of email templates that overrides the defaults.")
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where emails not yet sent are kept until the next run.")
    ] = Path("~/.keyrotation"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every decision.")] = False,
    history: HistoryOption = DEFAULT_FILE,
) -> None:
    """One daily run over the organization's accounts."""
    logs.configure(json_lines=False, level=logging.INFO if verbose else logging.WARNING)
    overrides = _overrides(setting)
    if enforce is not None:
        overrides["DryRunFlag"] = not enforce
    settings = load_settings(config, overrides=overrides)
    now = _now(as_of, settings)
    _check_folders(outbox, template_dir)
    context = RunContext(
        settings,
        now,
        dated=as_of is not None,
        forced_users=frozenset(force_rotate),
        unsent=FolderStore(state_dir.expanduser()),
        history=HistoryFile(history),
    )
    session = base_session()
    notifier = local_notifier(settings, session, outbox, template_dir)

    report = _run_with_progress(session, context, notifier, account, quiet=json_output)
    if json_output:
        out.print_json(json.dumps(report.to_dict()))
    else:
        print_report(report)
    raise typer.Exit(0 if report.clean else 1)


@app.command("history")
def history_command(
    account: Annotated[str | None, typer.Option(help="Only this account id.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this IAM user name.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this access key id.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events on or after DATE.")] = None,
    bucket: Annotated[
        str | None, typer.Option(help="Read the deployed stack's history from this S3 bucket.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="The bucket's key prefix.")] = "",
    history: HistoryOption = DEFAULT_FILE,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON Lines.")] = False,
) -> None:
    """What happened to a key: the changes and notices recorded by earlier runs."""
    wanted = HistoryFilter(account, user, key, _date("--since", since) if since else None)
    store = S3History(base_session(), bucket, prefix) if bucket else HistoryFile(history)
    events = list(store.read(wanted))
    if json_output:
        for event in events:
            print(event.to_json())
        return
    table = Table(title=f"{len(events)} events")
    for column in ("time", "run", "mode", "account", "user", "key id", "action", "reason"):
        table.add_column(column)
    table.add_column("outcome")
    for event in events:
        step = f" {event.step.lower()} on {event.on}" if event.step else ""
        outcome = f"[red]failed: {escape(event.error)}[/red]" if event.error else event.outcome
        table.add_row(
            event.time.strftime("%Y-%m-%d %H:%M"),
            event.run_id,
            event.mode,
            event.account,
            escape(event.user),
            event.key_id,
            event.action + step,
            event.reason,
            outcome + (f" ({escape(event.detail)})" if event.detail else ""),
        )
    out.print(table)


@app.command()
def report(
    output_format: Annotated[
        str, typer.Option("--format", help="table, csv, json or html.")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of the terminal.")
    ] = None,
    account: AccountOption = [],  # noqa: B006
    config: ConfigOption = None,
    setting: SettingOption = [],  # noqa: B006
) -> None:
    """Every key's standing against CIS 1.14, IAM.3 and IAM.8, and its next step (read-only)."""
    if output_format not in {"table", "csv", "json", "html"}:
        raise SettingsError(f"--format expects table, csv, json or html, got {output_format!r}")
    if output is not None:
        _check_output(output)
    settings = load_settings(config, overrides=_overrides(setting))
    inventory = read_organization(base_session(), settings, account)
    assessment = assess(inventory.users, settings.periods, datetime.now(UTC))
    if output_format == "table":
        print_assessment(assessment)
        for problem in inventory.errors:
            out.print(f"[red]error[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(1 if inventory.errors else 0)
    text = {
        "csv": lambda: to_csv(assessment),
        "json": lambda: to_json(assessment, inventory.errors),
        "html": lambda: to_html(assessment, inventory.accounts, inventory.errors),
    }[output_format]()
    if output is None:
        print(text, end="")
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"--output {output} cannot be written: {exc.strerror}") from None
        err.print(f"Report written to {output.resolve()}")
    raise typer.Exit(1 if inventory.errors else 0)


@app.command("forecast")
def forecast_command(
    days: Annotated[int, typer.Option(min=1, max=3650, help="How many days ahead.")] = 30,
    apps: Annotated[
        str,
        typer.Option(help="When applications start using a new key: now, after:DAYS or never."),
    ] = "now",
    account: AccountOption = [],  # noqa: B006
    config: ConfigOption = None,
    setting: SettingOption = [],  # noqa: B006
    json_output: Annotated[bool, typer.Option("--json", help="Print the events as JSON.")] = False,
) -> None:
    """Run the policy forward from today's keys and list each dated change and warning."""
    assumption = Apps.parse(apps)
    settings = load_settings(config, overrides=_overrides(setting))
    inventory = read_organization(base_session(), settings, account)
    events = forecast(inventory.users, settings.periods, datetime.now(UTC), days, assumption)
    if json_output:
        rows = [
            {
                "date": e.day.isoformat(),
                "account_id": e.account.account_id,
                "user": e.user,
                "key_id": e.action.key_id,
                "action": e.action.kind.value,
                "step": e.action.step.value if e.action.step else None,
                "step_date": e.action.on.isoformat(),
                "reason": e.action.reason.value,
            }
            for e in events
        ]
        out.print_json(json.dumps({"apps": str(assumption), "days": days, "events": rows}))
    else:
        table = Table(title=f"Next {days} days, applications switch keys: {assumption}")
        for column in ("date", "account", "user", "key id", "action", "reason"):
            table.add_column(column)
        for e in events:
            step = f" {e.action.step.lower()} on {e.action.on}" if e.action.step else ""
            table.add_row(
                e.day.isoformat(),
                e.account.account_id,
                escape(e.user),
                e.action.key_id,
                e.action.kind.value + step,
                e.action.reason.value,
            )
        out.print(table)
    for problem in inventory.errors:
        err.print(f"[red]error[/red] {escape(problem)}", highlight=False)
    raise typer.Exit(1 if inventory.errors else 0)


@app.command()
def demo(
    outbox: Annotated[Path, typer.Option(help="Folder for the demo's emails.")] = Path(
        "demo-outbox"
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every decision.")] = False,
) -> None:
    """Run the pipeline on a sample organization in the embedded AWS emulator."""
    try:
        from keyrotation.emulator.demo import run_demo
        from keyrotation.emulator.server import running_emulator
    except ImportError as exc:
        raise SettingsError(
            f"the demo needs the emulator extra ({exc.name} is missing): "
            "pip install -e '.[emulator]'"
        ) from None

    logs.configure(json_lines=False, level=logging.INFO if verbose else logging.WARNING)
    folder = outbox / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out.print("Starting the AWS emulator (moto's server) on a loopback port...")
    with running_emulator() as endpoint:
        out.print(f"Emulator at {endpoint}. Building the sample organization...")

        def notifier_for(path: Path) -> Notifier:
            settings = Settings(DryRunFlag=False)
            return local_notifier(settings, base_session(), path, None)

        def on_day(day: datetime, report: RunReport) -> None:
            out.rule(f"Run dated {day.date()} (enforce mode)")
            print_report(report)

        result = run_demo(folder, notifier_for, on_day)

    out.rule("Checks")
    for text, ok in result.checks:
        out.print(f"{'[green]PASS[/green]' if ok else '[red]FAIL[/red]'}  {text}")
    # The compliance report is written beside the emails; it is not one.
    emails = [path for path in result.outbox.glob("*.html") if path != result.report]
    out.print(f"\n{len(emails)} emails written to {result.outbox.resolve()}")
    out.print(f"History of every change and notice: {result.history.resolve()}")
    out.print(f"Compliance report (open in a browser): {result.report.resolve()}")
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def package(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to build into.")] = Path("dist"),
    prefix: Annotated[
        str, typer.Option(help="S3BucketPrefix of the main stack.")
    ] = "asa/asa-iam-rotation",
    bucket: Annotated[
        str | None, typer.Option(help="S3BucketName, to fill in the printed commands.")
    ] = None,
    dependencies: Annotated[
        bool,
        typer.Option(
            "--dependencies/--no-dependencies",
            help="Fetch pydantic and jinja2 for the Lambda platform from PyPI (needs pip).",
        ),
    ] = True,
) -> None:
    """Build the Lambda zip and the CloudFormation/Template/Lambda tree for `aws s3 sync`."""
    from keyrotation.packaging import build, next_steps

    built = build(out_dir, prefix, with_dependencies=dependencies)
    out.print(f"Built {built.root}:", highlight=False, markup=False)
    for path in (*built.cloudformation, *built.email_templates, built.lambda_zip):
        out.print(f"  {path.relative_to(out_dir)}", highlight=False, markup=False)
    out.print(
        "\nNext, in the primary account (see 'Deploying to AWS' in README.md):", highlight=False
    )
    for command in next_steps(built, out_dir, bucket):
        out.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


@app.command("install-key")
def install_key_command(
    profile: Annotated[
        str, typer.Option(help="Profile of the shared credentials file that holds your key.")
    ],
    central_account: Annotated[
        str | None,
        typer.Option(
            help="Account id of the central secrets account (StoreSecretsInCentralAccount)."
        ),
    ] = None,
    secret_arn: Annotated[
        str | None, typer.Option(help="Your secret's ARN, if you know it.")
    ] = None,
) -> None:
    """Put the new key from your secret into a profile, after checking it with STS."""
    from keyrotation.install_key import install_key

    if central_account is not None and not re.fullmatch(r"\d{12}", central_account):
        raise InputError(
            f"--central-account expects a 12-digit account id, got {central_account!r}"
        )
    done = install_key(profile, central_account, secret_arn)
    where = f"profile {done.profile} of {done.path}"
    replaced = done.replaced
    if replaced is None:
        out.print(
            f"Key {done.new_key_id} from {done.secret_id} is already in {where}; nothing changed.",
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )
        return
    through = (
        (f"{done.path} is a link; wrote to its target {replaced.target}, the link stays.",)
        if replaced.through_link
        else ()
    )
    tightened = (
        (
            f"Tightened the mode of {replaced.target} from {replaced.mode_before:04o} to "
            f"{replaced.mode:04o}: it holds a secret access key.",
        )
        if replaced.mode != replaced.mode_before
        else ()
    )
    lines = (
        f"Installed key {done.new_key_id} from {done.secret_id} in {where} "
        f"(it held {done.old_key_id}).",
        *through,
        *tightened,
        f"Backup of the file as it was: {replaced.backup}",
        f"Restart what uses profile {done.profile}: SDKs and the AWS CLI read the file when a "
        "process starts, so running services, containers and scheduled jobs keep key "
        f"{done.old_key_id} until they are restarted.",
        f"Key {done.old_key_id} stays active until keyrotation deactivates it (the date is in "
        "the account's email).",
    )
    for line in lines:
        out.print(line, highlight=False, markup=False, emoji=False, soft_wrap=True)


def local_notifier(
    settings: Settings, session, outbox: Path | None, template_dir: Path | None
) -> Notifier:
    folders = [template_dir, PACKAGE_TEMPLATES] if template_dir else [PACKAGE_TEMPLATES]
    for name in (settings.EmailTemplateAudit, settings.EmailTemplateEnforce):
        check_syntax(load_local(name, folders), name)  # fail before any change, not after
    sender = (
        OutboxSender(outbox, settings.AdminEmailAddress)
        if outbox
        else mail_sender(session, settings)
    )

    def send(notification: Notification) -> str:
        return deliver(notification, load_local(notification.template, folders), sender)

    return send


def print_report(report: RunReport) -> None:
    table = Table(
        title=f"Run {report.run_id}, {report.mode.value} mode"
        + (f", dated {report.dated}" if report.dated else "")
    )
    table.add_column("account")
    table.add_column("id")
    for column in ("users", "exempt", "rot", "deact", "del", "warn", "err"):
        table.add_column(column, justify="right")
    table.add_column("email")
    for account in report.accounts:
        table.add_row(
            escape(account.account.name),
            account.account.account_id,
            str(account.users_scanned),
            str(account.users_exempt),
            *(str(account.count(kind)) for kind in ActionKind),
            f"[red]{len(account.errors)}[/red]" if account.errors else "0",
            escape(account.notification),
        )
    out.print(table)
    for account in report.accounts:
        for problem in account.errors:
            _line("error", account.account.account_id, problem, "red")
        for problem in account.not_scanned:
            _line("not scanned", account.account.account_id, problem, "red")
        for note in account.skipped + account.recoveries + account.owner_fallbacks:
            _line("note", account.account.account_id, note, "yellow")
        for owner, status in account.owner_mails.items():
            _line("owner mail", account.account.account_id, f"{owner}: {status}", "cyan")
        if account.busy:
            _line("busy", account.account.account_id, account.busy, "yellow")
    for problem in report.errors:
        _line("error", "run", problem, "red")


def _line(kind: str, where: str, text: str, style: str) -> None:
    out.print(f"{kind} {where}: {text}", style=style, markup=False, highlight=False)


def print_assessment(assessment: Assessment) -> None:
    table = Table(title=f"Access keys on {assessment.generated.date()}")
    for column in ("account", "user", "key id", "status"):
        table.add_column(column)
    table.add_column("age", justify="right")
    for column in ("last used", "standing", "next step", "on"):
        table.add_column(column)
    for row in assessment.rows:
        step = row.next_step
        style = STANDING_STYLE[row.standing]
        table.add_row(
            row.account.account_id,
            escape(row.user),
            row.key.key_id,
            row.key.status.value,
            str(row.age),
            row.key.last_used.date().isoformat() if row.key.last_used else "never",
            f"[{style}]{row.standing.value}[/{style}]",
            step.kind.value.lower() if step else "",
            step.on.isoformat() if step else "",
        )
    out.print(table)


def _run_with_progress(session, context, notifier, accounts, quiet: bool) -> RunReport:
    with Progress(console=err, transient=True, disable=quiet) as progress:
        task = progress.add_task("accounts", total=None)

        def listed(count: int) -> None:
            progress.update(task, total=count)

        def done(account_report) -> None:
            progress.advance(task)

        return run_organization(session, context, notifier, accounts, done, listed)


def _overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SettingsError(f"--set expects NAME=VALUE, got {pair!r}")
        values[name.strip()] = value.strip()
    return values


def _now(as_of: str | None, settings: Settings) -> datetime:
    now = datetime.now(UTC)
    if as_of is None:
        return now
    day = _date("--as-of", as_of)
    if abs((day - now.date()).days) > 3650:
        raise SettingsError(f"--as-of {as_of} is more than ten years from today")
    if day < now.date() and settings.mode is Mode.ENFORCE:
        # Dates recorded in the past would shorten the grace periods of real keys.
        raise SettingsError("--as-of before today is a preview: use it with --dry-run only")
    return datetime.combine(day, now.timetz())


def _check_folders(outbox: Path | None, template_dir: Path | None) -> None:
    """Fail before any change on folders that cannot be used, not after."""
    if template_dir is not None and not template_dir.is_dir():
        raise SettingsError(f"--template-dir {template_dir} is not a folder")
    if outbox is not None:
        try:
            outbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(f"--outbox {outbox} cannot be used: {exc.strerror}") from None


def _check_output(output: Path) -> None:
    """Fail on a file that cannot be written before the scan, which can take minutes."""
    folder = output.expanduser().absolute().parent
    if not folder.exists():
        problem = f"folder {folder} does not exist"
    elif not folder.is_dir():
        problem = f"{folder} is not a folder"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"folder {folder} is not writable"
    elif output.is_dir():
        problem = "it is a folder"
    else:
        return
    raise SettingsError(f"--output {output} cannot be written: {problem}")


def _date(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"{option} expects a date as YYYY-MM-DD, got {text!r}") from None

"""The Lambda handlers of the main stack: JSON logs, then the entry point of the same name.

A handler that cannot do its job raises, so Lambda retries the event and then sends it to the
stack's failed-jobs queue, where nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from keyrotation import logs
from keyrotation.errors import AccountError, EventError, KeyRotationError
from keyrotation.handlers import entrypoints

log = logging.getLogger(__name__)

# Made with each function's role by the Lambda service, not by this code: writing the
# function's logs, and sending a failed event to the failed-jobs queue. The stack grants these
# to every function role beside the actions the code declares with `requires`.
RUNTIME_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"})
# Made by Lambda with each function's role when RunLambdaInVPC is true: the function's network
# interfaces in its subnets (the actions of AWSLambdaVPCAccessExecutionRole besides logs).
VPC_ACTIONS = frozenset(
    {
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)


def inventory(event: Any, context: Any) -> dict[str, Any]:
    """Scheduled daily: start one rotation job per ACTIVE account. The event is not read."""
    return _handle("inventory", entrypoints.inventory, event)


def rotation(event: Any, context: Any) -> dict[str, Any]:
    """One account: `{"account", "name", "email"}`, optional `ForceRotate` and `dryrun`."""
    return _handle("rotation", _rotate_account, event)


def notifier(event: Any, context: Any) -> dict[str, Any]:
    """Render the event's template from the bucket and send the email through SES or SMTP."""
    return _handle("notifier", entrypoints.notify, event)


def _handle(
    function: str, entry_point: Callable[[Any], dict[str, Any]], event: Any
) -> dict[str, Any]:
    logs.configure(json_lines=True)
    try:
        return entry_point(event)
    except EventError as exc:
        logs.event(log, "invalid event", logging.ERROR, function=function, error=str(exc))
        raise
    except KeyRotationError as exc:
        logs.event(log, "invocation failed", logging.ERROR, function=function, error=str(exc))
        raise


def _rotate_account(event: Any) -> dict[str, Any]:
    report = entrypoints.rotate_account(event)
    if report["failed"]:
        # Nothing was changed in the account, so Lambda's retries are safe; after them the
        # job lands in the failed-jobs queue with this message.
        raise AccountError(f"Account {report['account_id']} failed: {'; '.join(report['errors'])}")
    return report

"""Each AWS-calling operation declares the IAM actions it needs, beside the call.

`requires` records the actions on the function and in a registry keyed by the role that runs
the code, so the deployment templates can be checked against the code instead of kept by hand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

# Who makes the call: the member role in each account, or a role of the primary account.
MEMBER = "member"
INVENTORY = "inventory"
ROTATION = "rotation"
NOTIFIER = "notifier"
# A person reading history with the CLI.
OPERATOR = "operator"
# An IAM user installing its own new key (`keyrotation install-key`), with its current key.
KEY_HOLDER = "key holder"

REGISTRY: dict[str, dict[str, frozenset[str]]] = defaultdict(dict)


def requires(role: str, *actions: str) -> Callable[[F], F]:
    def mark(func: F) -> F:
        REGISTRY[role][func.__qualname__] = frozenset(actions)
        func.iam_actions = frozenset(actions)  # type: ignore[attr-defined]
        return func

    return mark


def actions_for(role: str) -> frozenset[str]:
    """Every IAM action the code makes under `role`."""
    return frozenset().union(*REGISTRY.get(role, {}).values())

"""Why a key gets an action: the fixed reason codes, each with its sentence and advice.

The codes are stable: users grep their logs for them. The emails, the report and the README's
decision table all read their words from this one table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class ReasonText:
    message: str
    advice: str


class Reason(enum.StrEnum):
    UNUSED_EXPIRED_KEY = "UNUSED_EXPIRED_KEY"
    EXPIRED_ACTIVE_KEY = "EXPIRED_ACTIVE_KEY"
    FORCED_ROTATION = "FORCED_ROTATION"
    EXPIRED_ACTIVE_KEY_CONFLICT_LRU = "EXPIRED_ACTIVE_KEY_CONFLICT_LRU"
    EXPIRED_INACTIVE_KEY_CONFLICT = "EXPIRED_INACTIVE_KEY_CONFLICT"
    FORCED_ROTATION_CONFLICT_LRU = "FORCED_ROTATION_CONFLICT_LRU"
    FORCED_INACTIVE_KEY_CONFLICT = "FORCED_INACTIVE_KEY_CONFLICT"
    INSTALL_GRACE_PERIOD_END = "INSTALL_GRACE_PERIOD_END"
    RECOVER_GRACE_PERIOD_END = "RECOVER_GRACE_PERIOD_END"
    KEY_PENDING_ROTATION = "KEY_PENDING_ROTATION"
    KEY_PENDING_DEACTIVATION = "KEY_PENDING_DEACTIVATION"
    KEY_PENDING_DELETION = "KEY_PENDING_DELETION"
    KEY_PENDING_EXPIRATION_CONFLICT = "KEY_PENDING_EXPIRATION_CONFLICT"
    KEY_PENDING_DELETION_CONFLICT = "KEY_PENDING_DELETION_CONFLICT"
    UNUSED_KEY_PENDING_DELETION = "UNUSED_KEY_PENDING_DELETION"
    # Our own, beside the fifteen above: holding a replaced key an application still uses.
    KEY_HELD_IN_USE = "KEY_HELD_IN_USE"
    MAX_HOLD_PERIOD_END = "MAX_HOLD_PERIOD_END"
    REPLACEMENT_IN_USE = "REPLACEMENT_IN_USE"

    @property
    def text(self) -> ReasonText:
        return REASON_TEXT[self]


REASON_TEXT: dict[Reason, ReasonText] = {
    Reason.UNUSED_EXPIRED_KEY: ReasonText(
        "The key reached the rotation period without ever being used, so nothing needs it.",
        "Nothing to do. Create a new key yourself if an application will need one.",
    ),
    Reason.EXPIRED_ACTIVE_KEY: ReasonText(
        "The key reached the rotation period and is in use, so it gets a replacement.",
        "Install the new key from the user's secret before the old key is deactivated.",
    ),
    Reason.FORCED_ROTATION: ReasonText(
        "An operator asked for this user's key to be rotated now.",
        "Install the new key from the user's secret before the old key is deactivated.",
    ),
    Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU: ReasonText(
        "Both keys are active and past the rotation period; the least recently used one "
        "is deactivated to make room for a replacement.",
        "Make sure every application uses the other key; reactivate this one only to recover.",
    ),
    Reason.EXPIRED_INACTIVE_KEY_CONFLICT: ReasonText(
        "An inactive key that was never used blocks the rotation of the expired active key, "
        "so it is deleted first.",
        "Nothing to do: the key was never used.",
    ),
    Reason.FORCED_ROTATION_CONFLICT_LRU: ReasonText(
        "A forced rotation needs a free key slot; of two active keys, the one already replaced "
        "(else the least recently used) is deleted at once.",
        "Install the new key from the user's secret now.",
    ),
    Reason.FORCED_INACTIVE_KEY_CONFLICT: ReasonText(
        "A forced rotation needs a free key slot; the inactive key is deleted at once.",
        "Install the new key from the user's secret now.",
    ),
    Reason.INSTALL_GRACE_PERIOD_END: ReasonText(
        "The installation grace period of the replaced key is over, so it is deactivated.",
        "If an application broke, reactivate the key and install the new one from the secret.",
    ),
    Reason.RECOVER_GRACE_PERIOD_END: ReasonText(
        "The key has been inactive for the whole recovery grace period, so it is deleted.",
        "Nothing to do, unless an application still needs it: then use the new key.",
    ),
    Reason.KEY_PENDING_ROTATION: ReasonText(
        "The key will reach the rotation period and get a replacement.",
        "Plan to install the new key from the user's secret once it is stored.",
    ),
    Reason.KEY_PENDING_DEACTIVATION: ReasonText(
        "The replaced key will be deactivated when its installation grace period ends.",
        "Switch every application to the new key from the user's secret before then.",
    ),
    Reason.KEY_PENDING_DELETION: ReasonText(
        "The inactive key will be deleted when its recovery grace period ends.",
        "Reactivate it before then only if an application still needs it.",
    ),
    Reason.KEY_PENDING_EXPIRATION_CONFLICT: ReasonText(
        "The user's newer key will reach the rotation period while the user still has two "
        "keys; on that date the least recently used active key is deactivated, or the "
        "rotation waits until the inactive key is deleted.",
        "Delete the key that is no longer needed, or make sure applications use the other one.",
    ),
    Reason.KEY_PENDING_DELETION_CONFLICT: ReasonText(
        "The key is past the rotation period; it will be rotated once the user's inactive "
        "key is deleted.",
        "Delete the inactive key yourself to let the rotation happen sooner.",
    ),
    Reason.UNUSED_KEY_PENDING_DELETION: ReasonText(
        "The key has never been used and will be deleted when it reaches the rotation period.",
        "Use the key or let it go; a deleted key cannot be recovered.",
    ),
    Reason.KEY_HELD_IN_USE: ReasonText(
        "The replaced key is still in use and its replacement has not been used, so its "
        "deactivation is held; it is deactivated on the date shown, or at the next run once "
        "the new key is used.",
        "Switch every application to the new key from the user's secret; this warning repeats "
        "daily until then.",
    ),
    Reason.MAX_HOLD_PERIOD_END: ReasonText(
        "The replaced key was held because an application still used it, and the hold reached "
        "its limit, so it is deactivated although its replacement was not used.",
        "If an application broke, reactivate the key and install the new one from the secret.",
    ),
    Reason.REPLACEMENT_IN_USE: ReasonText(
        "The replaced key was held because an application still used it; its replacement is "
        "now in use, so it is deactivated.",
        "Nothing to do, unless another application still needs it: then use the new key.",
    ),
}


# The reasons a WARN carries; only these are ever recorded as sent.
WARNINGS = frozenset(
    {
        Reason.KEY_PENDING_ROTATION,
        Reason.KEY_PENDING_DEACTIVATION,
        Reason.KEY_PENDING_DELETION,
        Reason.KEY_PENDING_EXPIRATION_CONFLICT,
        Reason.KEY_PENDING_DELETION_CONFLICT,
        Reason.UNUSED_KEY_PENDING_DELETION,
        Reason.KEY_HELD_IN_USE,
    }
)
# Sent again on each new day while it holds, never twice on one day; the others go out once.
DAILY_WARNINGS = frozenset({Reason.KEY_HELD_IN_USE})

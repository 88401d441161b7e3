"""A rotation as a resumable protocol, after the steps of Secrets Manager's rotation functions.

1. mark the user: a rotation of key K started today (a tag, so a later run can find it);
2. create the new key, and put it into the user's secret as the pending version;
3. check that the new key works (STS, signed with the new key);
4. promote the pending version to current; only a promoted key counts as a replacement;
5. record that K was replaced, and clear the mark.

A failure in steps 2 and 3 undoes what was done: the new key is deleted, K is untouched. A run
that stops anywhere leaves the mark, and the next run finishes or undoes the rotation before
it decides anything else for that user.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.aws.iam import IamAccount
from keyrotation.aws.records import Lifecycle, PendingRotation
from keyrotation.aws.secrets import CURRENT, SecretStore, version_id
from keyrotation.aws.sts import KeyChecker
from keyrotation.errors import RecordingError, RotationError
from keyrotation.model import AccessKey, KeyRecord, User

log = logging.getLogger(__name__)

AWS_ERRORS = (ClientError, BotoCoreError)


class Rotator:
    def __init__(self, iam: IamAccount, secrets: SecretStore, checker: KeyChecker, today: date):
        self.iam = iam
        self.secrets = secrets
        self.checker = checker
        self.today = today

    def rotate(self, user: User, old: AccessKey, record: KeyRecord) -> str:
        """Replace `old`; the old key itself is never touched here. Returns what was done."""
        if len(self.iam.key_ids(user.name)) >= 2:
            raise RotationError("the user already has two keys; no key was created")
        if not user.user_id:
            # The credential report names users without their unique id; the secret needs it.
            user = self.iam.user(user.name)
        self.iam.mark_rotation(user.name, PendingRotation(old.key_id, self.today))
        new = self.iam.create_key(user.name)
        try:
            # Name the new key in the mark first, so a later run knows it for ours.
            self.iam.mark_rotation(user.name, PendingRotation(old.key_id, self.today, new.key_id))
            # The key is checked before it is stored: the first version of a secret is
            # current at once, so a key that does not work must never reach it.
            self.checker.check(user, new)
            arn = self.secrets.ensure(user)
            self.iam.allow_secret_read(
                user.name, arn, self.secrets.regions, encrypted=self.secrets.kms_key is not None
            )
            version = self.secrets.put_pending(user, new)
        except (*AWS_ERRORS, RotationError) as exc:
            self._undo(user, new.key_id)
            raise RotationError(
                f"new key {new.key_id} was not stored, so it was deleted again and "
                f"key {old.key_id} stays as it was: {exc}"
            ) from exc
        self.secrets.promote(user.name, version)
        stored = f"new key {new.key_id} stored in secret {self.secrets.name(user.name)}"
        try:
            self._finish(user.name, old.key_id, record, self.today, new.key_id)
        except AWS_ERRORS as exc:
            raise RecordingError(stored, exc) from exc
        return stored

    def resume(self, user: User, keys: list[AccessKey], lifecycle: Lifecycle) -> str | None:
        """Finish or undo a rotation an earlier run left unfinished; say what was done."""
        pending = lifecycle.rotation
        if pending is None:
            return None
        if pending.new_key_id:
            newer = [k for k in keys if k.key_id == pending.new_key_id]
        else:
            # The run stopped before naming its key: only a key made within a day of the mark
            # and never used can be the rotation's.
            window = (pending.started, pending.started + timedelta(days=1))
            newer = [
                k
                for k in keys
                if k.key_id != pending.old_key_id
                and window[0] <= k.created.date() <= window[1]
                and not k.used
            ]
        if not newer:
            self.iam.clear_rotation(user.name)
            return (
                f"an interrupted rotation of key {pending.old_key_id} left no key of its own; "
                "cleared"
            )

        new = max(newer, key=lambda k: k.created)
        labels = (self.secrets.stages(user.name) or {}).get(version_id(new.key_id), [])
        if CURRENT in labels:
            self.secrets.promote(user.name, version_id(new.key_id))
            record = lifecycle.records.get(pending.old_key_id, KeyRecord())
            self._finish(user.name, pending.old_key_id, record, pending.started, new.key_id)
            return (
                f"finished an interrupted rotation: new key {new.key_id} is current in secret "
                f"{self.secrets.name(user.name)}"
            )
        # Never promoted, so no application was told of it: take it back and start again.
        self._undo(user, new.key_id, pending=bool(labels))
        return (
            f"undid an interrupted rotation: new key {new.key_id} was never made current, "
            f"so it was deleted; key {pending.old_key_id} stays as it was"
        )

    def _finish(
        self, user: str, old_key_id: str, record: KeyRecord, replaced: date, new_key_id: str
    ) -> None:
        """Record the replacement (warnings start afresh) and the new key's day; clear the mark."""
        present = self.iam.key_ids(user)
        if old_key_id in present:
            self.iam.write_record(
                user, old_key_id, replace(record, replaced=replaced, warned=frozenset())
            )
        if new_key_id in present:
            self.iam.write_record(user, new_key_id, KeyRecord(created=replaced))
        self.iam.clear_rotation(user)

    def _undo(self, user: User, key_id: str, pending: bool = True) -> None:
        """Delete the new key, then drop its pending version and the mark."""
        self.iam.delete_key(user.name, key_id)
        if pending:
            try:
                self.secrets.discard_pending(user.name, version_id(key_id))
            except ClientError as exc:
                # Nothing pending to drop (the put never happened): that is the state we want.
                if exc.response["Error"]["Code"] not in {
                    "ResourceNotFoundException",
                    "InvalidParameterException",
                }:
                    raise
        self.iam.clear_rotation(user.name)

"""keyrotation's errors: one base type, one subclass per failure a user can act on."""


class KeyRotationError(Exception):
    """Base of every error this tool raises on purpose."""


class InputError(KeyRotationError):
    """Bad input from the person or event that started the run; nothing was changed."""


class SettingsError(InputError):
    """A setting is missing or invalid; the message names the parameter."""


class PolicyError(KeyRotationError):
    """The policy was handed a state it cannot decide on."""


class EventError(InputError):
    """A Lambda event or CLI input is malformed; the message names the field."""


class AccountError(KeyRotationError):
    """An account could not be processed; the message says which and what to do."""


class UserGoneError(KeyRotationError):
    """The user was deleted between the listing and the action."""


class RotationError(KeyRotationError):
    """A rotation step failed; the message says what was undone."""


class RecordingError(KeyRotationError):
    """The change was made, but recording its date failed; the next run completes it."""

    def __init__(self, done: str, cause: Exception):
        super().__init__(f"{done}, but recording it failed ({cause}); the next run completes it")
        self.done = done


class TemplateError(KeyRotationError):
    """An email template is missing, unreadable or named with path parts."""


class NotificationError(KeyRotationError):
    """An email could not be sent."""


class HistoryError(KeyRotationError):
    """An event could not be written to, or read from, the history store."""


class CredentialReportError(KeyRotationError):
    """The IAM credential report cannot be had or read; the scan falls back to per-user calls."""


class ReportNotReadyError(AccountError):
    """The credential report was still being generated when the wait ran out: not scanned."""


class InstallError(KeyRotationError):
    """`install-key` could not install the key; the credentials file was not changed."""


class ReplicaError(KeyRotationError):
    """Secrets Manager could not replicate a secret to a region; the next run tries again."""

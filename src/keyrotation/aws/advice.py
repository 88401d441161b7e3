"""What to do about an AWS error, in one sentence for the run report."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

_ADVICE = {
    "AccessDenied": "Deploy or update the member role stack in this account, and check that "
    "the role trusts this tool's execution role.",
    "AccessDeniedException": "Check the role's permissions against the deployed templates.",
    "Throttling": "AWS kept throttling past the retries; the next run picks this up.",
    "ThrottlingException": "AWS kept throttling past the retries; the next run picks this up.",
    "TooManyRequestsException": "AWS kept throttling past the retries; the next run picks this up.",
    "MessageRejected": "Verify the sender address in SES (and, in the SES sandbox, the "
    "recipient); the email is kept and sent on the next run.",
    "LimitExceeded": "The user already has two keys; delete one that is no longer used.",
    "ServiceFailure": "AWS failed; the next run picks this up.",
    "InternalFailure": "AWS failed; the next run picks this up.",
}


def explain(exc: BaseException) -> str:
    """The error with its advice, if there is any for its code."""
    if isinstance(exc, ClientError):
        advice = _ADVICE.get(exc.response.get("Error", {}).get("Code", ""))
        if advice:
            return f"{exc} {advice}"
    if isinstance(exc, BotoCoreError):
        return f"{exc} Check the network path to AWS; the next run picks this up."
    return str(exc)

"""boto3 sessions and clients: the standard credential chain, adaptive retries, AssumeRole."""

from __future__ import annotations

import logging
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.errors import AccountError
from keyrotation.permissions import ROTATION, requires

log = logging.getLogger(__name__)

CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10},
    user_agent_extra="keyrotation",
)
DEFAULT_REGION = "us-east-1"
# A boto3 Session is not thread-safe, clients are: accounts run in threads share the caller's
# session, so clients are made one at a time.
_CLIENT_LOCK = threading.Lock()


def base_session() -> boto3.Session:
    """The session of the process: AWS_PROFILE, env keys, instance or Lambda role, as usual."""
    session = boto3.Session()
    if session.region_name is None:
        session = boto3.Session(region_name=DEFAULT_REGION)
    return session


def client(
    session: boto3.Session, service: str, region: str | None = None, config: Config | None = None
):
    with _CLIENT_LOCK:
        return session.client(
            service,
            region_name=region or session.region_name,
            config=CLIENT_CONFIG.merge(config) if config else CLIENT_CONFIG,
        )


def partition_of(session: boto3.Session) -> str:
    return session.get_partition_for_region(session.region_name or DEFAULT_REGION)


def member_role_arn(session: boto3.Session, account_id: str, role_name: str) -> str:
    return f"arn:{partition_of(session)}:iam::{account_id}:role/{role_name}"


@requires(ROTATION, "sts:AssumeRole")
def assume_role(session: boto3.Session, account_id: str, role_name: str) -> boto3.Session:
    """A session in `account_id` through the member role, reused for the account's whole run."""
    role_arn = member_role_arn(session, account_id, role_name)
    try:
        return assume_role_arn(session, role_arn, "keyrotation", 3600)
    except (ClientError, BotoCoreError) as exc:
        raise AccountError(
            f"Cannot assume {role_arn}: {exc}. Deploy the member role stack to account "
            f"{account_id} and check that it trusts this tool's execution role."
        ) from exc


def assume_role_arn(
    session: boto3.Session, role_arn: str, session_name: str, seconds: int
) -> boto3.Session:
    """A session with the role's temporary credentials, in the caller's region."""
    credentials = client(session, "sts").assume_role(
        RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=seconds
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=session.region_name,
    )

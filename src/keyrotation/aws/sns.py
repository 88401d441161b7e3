"""Publish to an SNS topic of the deployment's own account."""

from __future__ import annotations

import json
from typing import Any

import boto3

from keyrotation.aws.session import client
from keyrotation.permissions import ROTATION, requires


@requires(ROTATION, "sns:Publish")
def publish(session: boto3.Session, topic_arn: str, subject: str, message: dict[str, Any]) -> str:
    """Send `message` as JSON; the topic's region is taken from its ARN. Returns the id."""
    sns = client(session, "sns", region=topic_arn.split(":")[3])
    response = sns.publish(
        TopicArn=topic_arn, Subject=subject[:100], Message=json.dumps(message, ensure_ascii=False)
    )
    return response["MessageId"]

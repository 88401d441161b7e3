"""Email templates kept in the deployment's S3 bucket."""

from __future__ import annotations

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.aws.session import client
from keyrotation.errors import TemplateError
from keyrotation.notify.render import template_s3_key
from keyrotation.permissions import NOTIFIER, requires


@requires(NOTIFIER, "s3:GetObject")
def load_from_bucket(session: boto3.Session, bucket: str, prefix: str, name: str) -> str:
    key = template_s3_key(prefix, name)
    try:
        body = client(session, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body.decode("utf-8")
    except (ClientError, BotoCoreError, UnicodeDecodeError) as exc:
        raise TemplateError(f"Cannot read email template s3://{bucket}/{key}: {exc}") from exc

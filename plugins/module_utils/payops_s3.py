# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup bucket every payops backup module shares: one argument spec with AWS's own environment
variables as defaults, one client, retries with jittered backoff on transient failures only, and
error messages that say what failed without a traceback or a credential."""

from __future__ import annotations

import random
import time

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import boto3
    import botocore.exceptions
    from botocore.config import Config

    HAS_BOTO3 = True
except ImportError:  # reported by require_boto3() in the module's own words
    boto3 = None
    HAS_BOTO3 = False

# S3 error codes that mean "try again" (throttling, a server hiccup); anything else is an answer.
TRANSIENT_CODES = {
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException",
    "InternalError", "ServiceUnavailable", "500", "502", "503", "504",
}


def s3_argument_spec():
    """Bucket and connection options, each defaulting to boto3's environment variable."""
    return dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default="payops", no_log=False),
        endpoint_url=dict(type="str", fallback=(env_fallback, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
        region=dict(type="str", fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"]), default="us-east-1"),
        access_key=dict(type="str", fallback=(env_fallback, ["AWS_ACCESS_KEY_ID"]), no_log=True),
        secret_key=dict(type="str", fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY"]), no_log=True),
        session_token=dict(type="str", fallback=(env_fallback, ["AWS_SESSION_TOKEN"]), no_log=True),
        retries=dict(type="int", default=4),
        s3_timeout=dict(type="int", default=60),
    )


def require_boto3(module):
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"))


def describe_bucket(params):
    where = params.get("endpoint_url") or f"AWS {params['region']}"
    return f"s3://{params['bucket']}/{params['prefix'].strip('/')} ({where})"


def s3_client(module):
    """A boto3 S3 client; botocore's own retries are off, with_retries() decides what is retried."""
    require_boto3(module)
    return client_for(module.params)


def client_for(params):
    """s3_client for the options of s3_argument_spec as a mapping (an action plugin's arguments)."""
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=min(params["s3_timeout"], 10),
        read_timeout=params["s3_timeout"],
        signature_version="s3v4",
        s3={"addressing_style": "path"} if params.get("endpoint_url") else None,
    )
    session = boto3.session.Session(
        aws_access_key_id=params.get("access_key") or None,
        aws_secret_access_key=params.get("secret_key") or None,
        aws_session_token=params.get("session_token") or None,
        region_name=params["region"],
    )
    return session.client("s3", endpoint_url=params.get("endpoint_url") or None, config=config)


def error_code(exc):
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc):
    if not HAS_BOTO3:
        return False
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                        botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)):
        return True
    return error_code(exc) in TRANSIENT_CODES


def with_retries(call, *args, attempts=4, base_delay=0.5, max_delay=8.0, **kwargs):
    """call(*args, **kwargs), retried with full-jitter exponential backoff on transient errors only."""
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            time.sleep(random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1))))  # noqa: S311 - jitter
    raise AssertionError("unreachable")


def s3_message(exc, params, doing):
    """One line for an operator: what we were doing, where, and what S3 (or the network) said."""
    where = describe_bucket(params)
    code = error_code(exc)
    hints = {
        "NoSuchBucket": "the bucket does not exist: check payops_s3_bucket",
        "InvalidAccessKeyId": "the access key is not known to S3: check the credentials",
        "SignatureDoesNotMatch": "the secret key does not match the access key: check the credentials",
        "AccessDenied": "access denied: the credentials lack permission on this bucket",
        "ExpiredToken": "the session token has expired",
        "NoSuchKey": "the object does not exist",
        "404": "the object does not exist",
        "403": "access denied",
    }
    if code in ("404", "NoSuchBucket") and "bucket" in doing:
        code = "NoSuchBucket"
    if code:
        detail = hints.get(code) or exc.response.get("Error", {}).get("Message") or code
        return f"cannot {doing} in {where}: {detail} ({code})"
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.NoCredentialsError):
        return f"cannot {doing} in {where}: no AWS credentials (set payops_aws_access_key_id or AWS_ACCESS_KEY_ID)"
    if HAS_BOTO3 and isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                                      botocore.exceptions.ConnectTimeoutError)):
        return f"cannot {doing} in {where}: the S3 endpoint does not answer"
    if HAS_BOTO3 and isinstance(exc, (botocore.exceptions.ConnectionClosedError,
                                      botocore.exceptions.ReadTimeoutError)):
        return f"cannot {doing} in {where}: the connection to S3 broke off"
    text = str(exc).strip().splitlines()
    return f"cannot {doing} in {where}: {text[0] if text else exc.__class__.__name__}"


def is_s3_error(exc):
    return HAS_BOTO3 and isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError))


def list_keys(client, bucket, prefix, attempts=4):
    """Every current object under prefix: [{key, size, last_modified}]."""
    found = []
    token = None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = with_retries(client.list_objects_v2, attempts=attempts, **kwargs)
        for item in page.get("Contents", []):
            found.append({"key": item["Key"], "size": item["Size"], "last_modified": item["LastModified"]})
        if not page.get("IsTruncated"):
            return found
        token = page["NextContinuationToken"]

"""S3: moto's server on loopback (real HTTP, boto3 unchanged), holding the backup bucket (versioned,
with S3 Object Lock enabled: the audit trail's anchors and archives are kept under it) and a copy of
the release store."""

from __future__ import annotations

import contextlib
import shutil
from typing import Any

from payops.errors import PayopsError
from payops.sandbox import release_store
from payops.sandbox.services.base import HOST, Markers, Service, State, beside_python

S3_BUCKET = "payops-backups"
S3_REGION = "us-east-1"
# moto accepts any key; fixed values keep the inventory and the docs simple.
AWS_ACCESS_KEY_ID = "sandbox-access-key"
AWS_SECRET_ACCESS_KEY = "sandbox-secret-key"  # noqa: S105 - a fake key for moto on loopback


class S3Service(Service):
    name = "s3"
    preferred_port = 18083
    health_path = "/"
    any_answer_is_healthy = True  # moto lists buckets

    def find_tools(self) -> dict[str, str]:
        found = beside_python("moto_server") or shutil.which("moto_server")
        if not found:
            raise PayopsError("moto_server is not installed in this environment: run "
                              "scripts/bootstrap (or pip install 'moto[server]')")
        self.tools["s3"] = found
        return self.tools

    def markers(self) -> Markers:
        return Markers(("moto", "-p"), self.directory)

    def command(self, state: State) -> list[str]:
        return [self.tools["s3"], "-H", HOST, "-p", str(state["ports"]["s3"])]

    def prepare(self, state: State) -> None:
        """The backup bucket, versioned and with Object Lock (which only a new bucket can be given; no
        default retention: backups keep their own lifecycle, the audit trail's objects set theirs),
        and the release store: moto keeps them in memory, so every `up` makes sure of them."""
        client = s3_client({"s3_endpoint": f"http://{HOST}:{state['ports']['s3']}", "s3_region": S3_REGION,
                            "aws_access_key_id": state["credentials"]["aws_access_key_id"],
                            "aws_secret_access_key": state["credentials"]["aws_secret_access_key"]})
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=S3_BUCKET, ObjectLockEnabledForBucket=True)
        client.put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        uploaded = release_store.publish(client, self.ctx.release_store)
        if uploaded:
            self.ctx.say(f"published the release store to s3://{release_store.RELEASE_BUCKET}/releases/ "
                         f"({uploaded} objects)")


def s3_client(info: dict[str, Any]) -> Any:
    """A boto3 S3 client for the endpoint and credentials of `status --json` (or state.json)."""
    import boto3

    return boto3.client("s3", endpoint_url=info["s3_endpoint"], region_name=info["s3_region"],
                        aws_access_key_id=info["aws_access_key_id"],
                        aws_secret_access_key=info["aws_secret_access_key"])

# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming into and out of S3 with SHA-256 on the way: the multipart writer, small objects,
compression through zstd, reading an object once, and the upload options every backup module takes
(doc fragment payops_backup_upload)."""

from __future__ import annotations

import hashlib
import queue
import subprocess
import threading

from ansible_collections.betaskill.payops.plugins.module_utils.payops_backup_layout import BackupError
from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import with_retries

CHUNK = 1024 * 1024


class MultipartWriter:
    """Streams a file-like source into one S3 multipart upload: SHA-256 and size on the way, at most
    three parts in memory (one uploading, one waiting, one filling), aborted on any failure so nothing half-written
    is left behind as if complete."""

    def __init__(self, client, bucket, key, part_size, sse=None, kms_key_id=None, attempts=4, metadata=None):
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = max(int(part_size), 5 * 1024 * 1024)
        self.attempts = attempts
        self.extra = {}
        if sse:
            self.extra["ServerSideEncryption"] = sse
            if kms_key_id:
                self.extra["SSEKMSKeyId"] = kms_key_id
        self.metadata = metadata or {}
        self.upload_id = None
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.parts = []

    def upload(self, source, before_complete=None):
        """Upload everything source yields; before_complete() may raise to abort instead of completing
        (a pg_dump that failed after writing part of its output)."""
        created = with_retries(self.client.create_multipart_upload, attempts=self.attempts, Bucket=self.bucket,
                               Key=self.key, Metadata=self.metadata, **self.extra)
        self.upload_id = created["UploadId"]
        pending = queue.Queue(maxsize=1)
        failure = []

        def uploader():
            while True:
                item = pending.get()
                if item is None:
                    return
                number, data = item
                if failure:
                    continue
                try:
                    answer = with_retries(self.client.upload_part, attempts=self.attempts, Bucket=self.bucket,
                                          Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data)
                    self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                except Exception as exc:  # handed back to the reading thread
                    failure.append(exc)

        thread = threading.Thread(target=uploader, name="payops-s3-upload", daemon=True)
        thread.start()
        try:
            number = 0
            while not failure:
                data = read_full(source, self.part_size)
                if not data and number > 0:
                    break
                number += 1
                self.sha256.update(data)
                self.size += len(data)
                # Blocks while one part uploads and one waits: memory stays at a few parts.
                pending.put((number, data))
                if not data:
                    break  # an empty source is one empty part
            pending.put(None)
            thread.join()
            if failure:
                raise failure[0]
            if before_complete is not None:
                before_complete()
            self.parts.sort(key=lambda part: part["PartNumber"])
            answer = with_retries(self.client.complete_multipart_upload, attempts=self.attempts, Bucket=self.bucket,
                                  Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts})
        except BaseException:
            failure.append(RuntimeError("stopped"))
            drain(pending)
            pending.put(None)
            thread.join(timeout=60)
            self.abort()
            raise
        return {"name": self.key.rsplit("/", 1)[-1], "key": self.key, "size": self.size,
                "sha256": self.sha256.hexdigest(), "parts": len(self.parts), "version_id": answer.get("VersionId")}

    def abort(self):
        """Best effort: when S3 itself is gone, backup:verify-status lists the upload and cleanup removes it."""
        if not self.upload_id:
            return False
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            return True
        except Exception:
            return False


def drain(pending):
    try:
        while True:
            pending.get_nowait()
    except queue.Empty:
        pass


def read_full(source, size):
    """Up to size bytes: a pipe returns what it has, so read until the part is full or the stream ends."""
    chunks = []
    wanted = size
    while wanted > 0:
        data = source.read(min(wanted, 8 * CHUNK))
        if not data:
            break
        chunks.append(data)
        wanted -= len(data)
    return b"".join(chunks)


def put_small(client, bucket, key, data, sse=None, kms_key_id=None, attempts=4, content_type="application/json"):
    extra = {}
    if sse:
        extra["ServerSideEncryption"] = sse
        if kms_key_id:
            extra["SSEKMSKeyId"] = kms_key_id
    answer = with_retries(client.put_object, attempts=attempts, Bucket=bucket, Key=key, Body=data,
                          ContentType=content_type, **extra)
    return {"name": key.rsplit("/", 1)[-1], "key": key, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "version_id": answer.get("VersionId")}


def upload_compressed(writer, produce, level=1, threads=0):
    """Stream what produce(sink) writes through `zstd` into writer (a MultipartWriter): the producer
    runs in a thread, zstd in a pipe, nothing is staged. Any failure of the producer or of zstd
    aborts the upload. Returns the writer's stored object."""
    import tempfile

    with tempfile.TemporaryFile() as zstd_err:
        # pylint: disable-next=ansible-bad-function  # a pipeline (producer -> zstd -> S3): run_command cannot stream
        compressor = subprocess.Popen(["zstd", "-q", "-c", f"-{level}", f"-T{threads}"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=zstd_err)
        failure = []

        def feed():
            try:
                produce(compressor.stdin)
            except BaseException as exc:  # handed back to the uploading thread
                failure.append(exc)
            finally:
                try:
                    compressor.stdin.close()
                except OSError as exc:
                    failure.append(exc)

        thread = threading.Thread(target=feed, name="payops-tar", daemon=True)
        thread.start()

        def finished_cleanly():
            thread.join()
            if failure:
                raise failure[0]
            code = compressor.wait()
            if code != 0:
                zstd_err.seek(0)
                text = first_lines(zstd_err.read().decode(errors="replace"))
                raise BackupError(f"zstd failed (exit {code}): {text or 'no message'}")

        try:
            stored = writer.upload(compressor.stdout, before_complete=finished_cleanly)
        except BaseException:
            if compressor.poll() is None:
                compressor.kill()
            compressor.wait()
            thread.join(timeout=30)
            raise
    stored.update(compression="zstd")
    return stored


def stream_object(client, bucket, key, sink=None, attempts=4):
    """Read an object once, hashing it; feed each chunk to sink(chunk) when given.

    Returns (size, sha256 hex, sink_error). A sink that breaks (a pg_restore that exits) stops
    being fed, the hash still covers the whole object."""
    answer = with_retries(client.get_object, attempts=attempts, Bucket=bucket, Key=key)
    body = answer["Body"]
    digest = hashlib.sha256()
    size = 0
    sink_error = None
    try:
        for chunk in body.iter_chunks(chunk_size=CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None and sink_error is None:
                try:
                    sink(chunk)
                except (BrokenPipeError, OSError) as exc:
                    sink_error = exc
    finally:
        body.close()
    return size, digest.hexdigest(), sink_error


def safe_member_name(name):
    """A tar member name that stays inside the folder it is unpacked into, or BackupError."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        raise BackupError(f"archive member {name!r} would land outside its folder")
    return "/".join(parts)


def first_lines(text, limit=5):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return "; ".join(lines[:limit])


UPLOAD_REQUIRED_IF = [("sse", "aws:kms", ("sse_kms_key_id",))]


def upload_argument_spec():
    """Options of a backup's upload to S3, shared by supabase_backup and files_backup."""
    return dict(
        compression_threads=dict(type="int", default=0),
        part_size_mb=dict(type="int", default=16),
        sse=dict(type="str", choices=["AES256", "aws:kms", "none"], default="AES256"),
        sse_kms_key_id=dict(type="str", no_log=False),
        run_id=dict(type="str"),
        operator=dict(type="str"),
    )


def check_upload_params(module):
    """What the argument spec cannot say: S3's part size limits."""
    if not 5 <= module.params["part_size_mb"] <= 5120:
        module.fail_json(msg="part_size_mb must be between 5 and 5120 (S3's part size limits)")

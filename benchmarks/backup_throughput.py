#!/usr/bin/env python3
"""Backup throughput and memory: payops' supabase_backup against pg_dump -Fc piped into a plain boto3
upload, in the same run, on a generated database; then restore time against plain pg_restore.

    export PAYOPS_SANDBOX_DIR=/tmp/sandbox-bench   # a sandbox that is up (payops sandbox up)
    python benchmarks/backup_throughput.py --size-mb 500

Prints MB/s of both (database size / wall time of the dump-and-upload), their ratio, each one's
peak RSS (largest process of its tree, from wait4), and both restore times. Not a test: it never
fails on a time. The generated database (payops_bench) is kept for the next run unless --drop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "payops_bench"
PREFIX = "bench"

BASELINE = r"""
import subprocess, sys, boto3
endpoint, bucket, key, region = sys.argv[1:5]
dump = subprocess.Popen(["pg_dump", "-Fc"], stdout=subprocess.PIPE)
boto3.client("s3", endpoint_url=endpoint, region_name=region).upload_fileobj(dump.stdout, bucket, key)
sys.exit(dump.wait())
"""

BASELINE_RESTORE = r"""
import subprocess, sys, boto3
endpoint, bucket, key, region, db = sys.argv[1:6]
restore = subprocess.Popen(["pg_restore", "-Fc", "--no-owner", "--no-privileges", "-d", db], stdin=subprocess.PIPE)
body = boto3.client("s3", endpoint_url=endpoint, region_name=region).get_object(Bucket=bucket, Key=key)["Body"]
for chunk in body.iter_chunks(1 << 20):
    restore.stdin.write(chunk)
restore.stdin.close()
sys.exit(restore.wait())
"""


def status() -> dict:
    out = subprocess.run([sys.executable, "-m", "payops.cli", "sandbox", "status", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def conninfo(sb: dict, db: str) -> str:
    return (f"host={sb['postgres_host']} port={sb['postgres_port']} user={sb['postgres_user']} "
            f"password={sb['postgres_password']} dbname={db}")


def generate(sb: dict, size_mb: int) -> int:
    """payment-like rows (random text + jsonb) until the database holds size_mb."""
    with psycopg.connect(conninfo(sb, sb["postgres_db"]), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
    with psycopg.connect(conninfo(sb, BENCH_DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS payments (id bigserial PRIMARY KEY, reference text, amount int,"
                     " status text, gateway_response jsonb, note text, created_at timestamptz DEFAULT now())")
        while True:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            if size >= size_mb * 1_000_000:
                return size
            print(f"  generating: {size / 1e6:.0f} of {size_mb} MB", flush=True)
            conn.execute("""
                INSERT INTO payments (reference, amount, status, gateway_response, note)
                SELECT 'SKILL-' || g || '-' || md5(random()::text),
                       (random() * 100000)::int,
                       (ARRAY['pending', 'completed', 'failed'])[1 + (random() * 2)::int],
                       jsonb_build_object('paylinkID', md5(random()::text), 'responseCode', '00',
                                          'message', md5(random()::text) || md5(random()::text)),
                       md5(random()::text) || md5(random()::text) || md5(random()::text)
                  FROM generate_series(1, 200000) g""")


def measured(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB of the largest process of the tree, stdout)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    out = process.stdout.read()
    _, code, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(code)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{out[-3000:]}")
    return seconds, usage.ru_maxrss // 1024, out


def module_run(module: str, args: dict, env: dict[str, str]) -> tuple[float, int, dict]:
    env = {**env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    seconds, rss, out = measured(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", module, "-a", json.dumps(args)], env)
    result = json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return seconds, rss, result


def drop(sb: dict, name: str) -> None:
    with psycopg.connect(conninfo(sb, sb["postgres_db"]), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500, help="size of the generated database (500)")
    parser.add_argument("--part-size-mb", type=int, default=16)
    parser.add_argument("--drop", action="store_true", help="drop the generated database afterwards")
    args = parser.parse_args()
    sb = status()
    print(f"database {BENCH_DB}: at least {args.size_mb} MB")
    size = generate(sb, args.size_mb)
    mb = size / 1e6
    env = {**os.environ, "PGHOST": sb["postgres_host"], "PGPORT": str(sb["postgres_port"]),
           "PGUSER": sb["postgres_user"], "PGPASSWORD": sb["postgres_password"], "PGDATABASE": BENCH_DB,
           "AWS_ACCESS_KEY_ID": sb["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": sb["aws_secret_access_key"],
           "PATH": f"/usr/lib/postgresql/15/bin:{os.environ['PATH']}"}
    bucket, endpoint, region = sb["s3_bucket"], sb["s3_endpoint"], sb["s3_region"]
    baseline_key = f"{PREFIX}/baseline/{int(time.time())}.dump"

    base_s, base_rss, _ = measured([sys.executable, "-c", BASELINE, endpoint, bucket, baseline_key, region], env)
    ours_s, ours_rss, result = module_run("supabase_backup", {
        "environment": "bench", "label": "bench", "bucket": bucket, "endpoint_url": endpoint, "region": region,
        "prefix": PREFIX, "part_size_mb": args.part_size_mb, "login_db": BENCH_DB}, env)
    if result.get("failed"):
        raise SystemExit(f"supabase_backup failed: {result.get('msg')}")
    base_size = _object_size(sb, baseline_key)
    module_s = result["seconds"]
    print(f"\nbackup of {mb:.0f} MB ({args.part_size_mb} MiB parts)")
    print(f"  baseline  pg_dump -Fc | boto3 upload_fileobj : {base_s:6.1f} s  {mb / base_s:6.1f} MB/s  "
          f"stored {base_size / 1e6:6.1f} MB  peak RSS {base_rss} MiB")
    print(f"  payops    supabase_backup (zstd, sha256, MPU) : {module_s:6.1f} s  {mb / module_s:6.1f} MB/s  "
          f"stored {result['size'] / 1e6:6.1f} MB  peak RSS {ours_rss} MiB")
    print(f"            (snapshot to manifest; {ours_s:.1f} s with ansible's start; RSS is the largest process "
          f"of the tree, ansible's controller included)")
    print(f"  ratio     {base_s / module_s:.2f}x the baseline's throughput "
          f"({base_s / ours_s:.2f}x with ansible's start)")

    plain_db, ours_db = "payops_bench_plain", "payops_bench_restore"
    drop(sb, plain_db)
    drop(sb, ours_db)
    with psycopg.connect(conninfo(sb, sb["postgres_db"]), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {plain_db}")
    plain_s, plain_rss, _ = measured(
        [sys.executable, "-c", BASELINE_RESTORE, endpoint, bucket, baseline_key, region, plain_db], env)
    restore_s, restore_rss, restored = module_run("supabase_restore", {
        "environment": "bench", "bucket": bucket, "endpoint_url": endpoint, "region": region, "prefix": PREFIX,
        "backup_id": result["backup_id"], "target_db": ours_db, "login_db": BENCH_DB}, env)
    if restored.get("failed"):
        raise SystemExit(f"supabase_restore failed: {restored.get('msg')}")
    module_restore = restored["verify_seconds"] + restored["restore_seconds"]
    print("\nrestore")
    print(f"  baseline  S3 -> pg_restore (gzip archive)      : {plain_s:6.1f} s  peak RSS {plain_rss} MiB")
    print(f"  payops    supabase_restore                     : {module_restore:6.1f} s  peak RSS {restore_rss} MiB "
          f"(checksum pass {restored['verify_seconds']:.1f} s + restore pass {restored['restore_seconds']:.1f} s; "
          f"{restore_s:.1f} s with ansible's start and the row counts of {restored['tables_compared']} tables)")
    print(f"  ratio     {module_restore / plain_s:.2f}x the baseline's time")
    drop(sb, plain_db)
    drop(sb, ours_db)
    if args.drop:
        drop(sb, BENCH_DB)
    return 0


def _object_size(sb: dict, key: str) -> int:
    import boto3

    client = boto3.client("s3", endpoint_url=sb["s3_endpoint"], region_name=sb["s3_region"],
                          aws_access_key_id=sb["aws_access_key_id"], aws_secret_access_key=sb["aws_secret_access_key"])
    return client.head_object(Bucket=sb["s3_bucket"], Key=key)["ContentLength"]


if __name__ == "__main__":
    sys.exit(main())

"""A real S3-compatible server for tests: moto's server on a free port, fresh buckets per test."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from tests.support.backends import unavailable
from tests.support.processes import free_port

ACCESS_KEY = "wharf-test"
SECRET_KEY = "wharf-test-secret"
REGION = "us-east-1"


@contextmanager
def moto_server(log_dir: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """moto's S3 server in its own process; yields its endpoint URL."""
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if binary is None:
        unavailable("moto_server", FileNotFoundError("moto[server] is not installed in the venv"))
        raise AssertionError("unreachable")
    port = free_port(host)
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"moto-{port}.log").open("ab") as log:
        process = subprocess.Popen(
            [binary, "-H", host, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    endpoint = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client(endpoint: str):  # type: ignore[no-untyped-def]  # boto3 clients are untyped
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def create_bucket(endpoint: str, name: str | None = None) -> str:
    bucket = name or f"wharf-{uuid.uuid4().hex[:12]}"
    client(endpoint).create_bucket(Bucket=bucket)
    return bucket


def empty_bucket(endpoint: str, bucket: str) -> None:
    """Delete every object in `bucket` (moto holds them all in memory)."""
    s3 = client(endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def storage_env(endpoint: str, bucket: str, **overrides: str) -> dict[str, str]:
    """The WHARF_STORAGE__* variables that put a service on this bucket."""
    env = {
        "WHARF_STORAGE__DRIVER": "s3",
        "WHARF_STORAGE__S3__BUCKET": bucket,
        "WHARF_STORAGE__S3__ENDPOINT_URL": endpoint,
        "WHARF_STORAGE__S3__REGION": REGION,
        "WHARF_STORAGE__S3__ACCESS_KEY": ACCESS_KEY,
        "WHARF_STORAGE__S3__SECRET_KEY": SECRET_KEY,
        "WHARF_STORAGE__S3__PATH_STYLE": "true",
    }
    env.update({f"WHARF_STORAGE__S3__{k.upper()}": v for k, v in overrides.items()})
    return env


def storage_settings(endpoint: str, bucket: str, **overrides: object) -> dict[str, object]:
    """The `storage` settings group (for `Settings(storage=…)`) on this bucket."""
    s3: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": REGION,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "path_style": True,
        **overrides,
    }
    return {"driver": "s3", "s3": s3}

"""A real S3-protocol server on loopback for tests: moto's server mode in a child process.

Usage as a pytest fixture (``from s3server import s3_server``) or directly::

    with S3Server() as s3:            # starts `python -m moto.server` on a free 127.0.0.1 port
        s3.create_bucket("corpus")
        s3.put("corpus", "shards/a.txt", b"the cat sat\\n")
        env = s3.env                  # endpoint + fake credentials for child processes

The server holds everything in memory and is stopped (and its process reaped) on exit. The
credentials are fake, random per server, and never real AWS ones: the environment it hands
out points AWS's config and credential files at nothing, so no profile on the machine is read.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Optional

import pytest

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """moto's S3 server on 127.0.0.1, started in a child process."""

    def __init__(self, port: Optional[int] = None, startup_timeout: float = 60.0):
        self.port = port
        self.startup_timeout = startup_timeout
        self.process: Optional[subprocess.Popen] = None
        # fake and unique, so a test can search logs and tables for them
        self.access_key = "AKIATEST" + secrets.token_hex(6).upper()
        self.secret_key = "secret-" + secrets.token_hex(16)
        self._log = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point AWS clients (boto, s3fs, S3A) at this server."""
        return {
            "BITCIPHER_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "S3Server":
        last_error = None
        for _ in range(3):  # a port picked free can be taken before the server binds it
            port = self.port or _free_port()
            self._log = open(os.devnull, "wb")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL,
            )
            self.port = port
            try:
                self._wait_ready()
                return self
            except RuntimeError as exc:
                last_error = exc
                self.stop()
                self.port = None
        raise RuntimeError(f"moto server did not start: {last_error}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers: up
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"no answer on {self.endpoint} after {self.startup_timeout} s")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- data ------------------------------------------------------------------------------

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )

    def create_bucket(self, bucket: str) -> str:
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(out)

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def upload_dir(self, local_dir, bucket: str, prefix: str) -> str:
        """Copy every file under `local_dir` to s3a://bucket/prefix/...; return that URI."""
        local_dir = os.fspath(local_dir)
        for dirpath, _, filenames in os.walk(local_dir):
            for name in filenames:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
                with open(path, "rb") as fh:
                    self.put(bucket, f"{prefix.strip('/')}/{rel}", fh.read())
        return f"s3a://{bucket}/{prefix.strip('/')}"


@pytest.fixture(scope="module")
def s3_server():
    """A running moto S3 server whose endpoint and fake credentials are in os.environ for
    the module's tests (restored afterwards)."""
    pytest.importorskip("moto.server", reason="needs the s3 extra: pip install -e '.[s3]'")
    pytest.importorskip("s3fs", reason="needs the s3 extra: pip install -e '.[s3]'")
    server = S3Server().start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()

"""Where the corpus and the lake live: local paths or S3-compatible object storage.

Settings come from the environment only (endpoint, region, path style); credentials are
left to the AWS default chain and never pass through here.
"""

from __future__ import annotations

import os
from typing import Optional


S3_SCHEMES = ("s3a://", "s3://")


def is_s3(uri) -> bool:
    """Whether `uri` names S3-compatible object storage."""
    return isinstance(uri, str) and uri.lower().startswith(S3_SCHEMES)


def s3_endpoint() -> Optional[str]:
    """The S3 endpoint from the environment: ``BITCIPHER_S3_ENDPOINT``, else the AWS SDKs'
    own ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; None means AWS itself."""
    for name in ("BITCIPHER_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def s3_region() -> Optional[str]:
    return (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "").strip() \
        or None


def s3_path_style() -> bool:
    """Path-style requests (``endpoint/bucket/key``): ``BITCIPHER_S3_PATH_STYLE``, by default
    on when an endpoint is set (MinIO, Ceph, moto...) and off for AWS itself."""
    value = os.environ.get("BITCIPHER_S3_PATH_STYLE", "").strip().lower()
    if value:
        return value in ("1", "true", "yes", "on")
    return s3_endpoint() is not None


def s3_storage_options() -> dict:
    """s3fs settings from the environment. Credentials are not among them: s3fs (botocore)
    finds them itself, in ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
    ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared files, or an instance role."""
    # Spark writes behind s3fs's back: never answer a listing from s3fs's cache
    options: dict = {"use_listings_cache": False}
    endpoint = s3_endpoint()
    if endpoint:
        options["endpoint_url"] = endpoint
    region = s3_region()
    if region:
        options["client_kwargs"] = {"region_name": region}
    if s3_path_style():
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    return options


def _configure_s3() -> None:
    """Make every s3fs filesystem this process opens (driver or Python worker) use the
    endpoint and settings of the environment (fsspec's per-protocol defaults)."""
    from fsspec.config import conf

    options = s3_storage_options()
    if conf.get("s3") != options:
        conf["s3"] = options


def fsspec_uri(uri: str) -> str:
    """The fsspec spelling of a URI Spark reads (``s3a://`` is fsspec's ``s3://``)."""
    if is_s3(uri):
        _configure_s3()
        return "s3://" + uri.split("://", 1)[1]
    return uri

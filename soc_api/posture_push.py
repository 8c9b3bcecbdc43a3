"""The scheduled push of the posture document to the national centre: signed, retried until accepted.

Signature: HMAC-SHA256 over ``<timestamp>.<body>`` with the key shared with the national centre (from the
environment variable ``soc_api.posture.signing_key_env`` names), sent as ``X-SOC-Signature: sha256=<hex>`` with
``X-SOC-Timestamp`` and ``X-SOC-Document-Id``; the receiver recomputes it and may refuse stale timestamps. A push is
retried with exponential backoff (retry_initial_seconds doubling up to retry_max_seconds) until the endpoint answers
2xx; every push is recorded (collection ``posture_pushes``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
import uuid

import httpx

from soc import ecs
from soc_api.data import Data
from soc_api.posture import build_posture
from soc_api.settings import PostureConfig, api_settings

log = logging.getLogger(__name__)


def sign(body: bytes, key: bytes, timestamp: str) -> str:
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(body: bytes, key: bytes, timestamp: str, signature: str) -> bool:
    return hmac.compare_digest(sign(body, key, timestamp), signature or "")


def signing_key(cfg: PostureConfig) -> bytes:
    value = os.environ.get(cfg.signing_key_env or "") if cfg.signing_key_env else None
    if not value:
        raise RuntimeError(f"posture push: the signing key variable {cfg.signing_key_env!r} is not set")
    return value.encode()


async def push_once(suite, client: httpx.AsyncClient, *, max_attempts: int | None = None) -> dict:
    """Build the document and push it until accepted (or ``max_attempts``); returns the push record."""
    cfg = api_settings(suite).posture
    key = signing_key(cfg)
    loop = asyncio.get_running_loop()
    system = Data.system(suite, "posture-push")
    document = await loop.run_in_executor(None, build_posture, system)
    document["document_id"] = uuid.uuid4().hex
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    record = {"id": document["document_id"], "generated": document["generated"], "url": cfg.push_url,
              "attempts": 0, "status": "pending", "last_error": None, "accepted_at": None}
    delay = cfg.retry_initial_seconds
    while True:
        record["attempts"] += 1
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-SOC-Timestamp": timestamp,
                   "X-SOC-Signature": sign(body, key, timestamp), "X-SOC-Document-Id": record["id"]}
        try:
            response = await client.post(cfg.push_url, content=body, headers=headers, timeout=cfg.timeout_seconds)
            if 200 <= response.status_code < 300:
                record.update(status="accepted", accepted_at=ecs.now_iso(), http_status=response.status_code)
                break
            record["last_error"] = f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            record["last_error"] = f"{type(exc).__name__}: {exc}"
        log.warning("posture push attempt %d failed (%s); retrying in %.0f s", record["attempts"],
                    record["last_error"], delay)
        if max_attempts is not None and record["attempts"] >= max_attempts:
            record["status"] = "failed"
            break
        await loop.run_in_executor(None, system.record_posture_push, record)
        await asyncio.sleep(delay)
        delay = min(delay * 2, cfg.retry_max_seconds)
    await loop.run_in_executor(None, system.record_posture_push, record)
    return record


def push_task(suite):
    """A background task for the suite: push now, then every push_interval_seconds."""

    async def run() -> None:
        cfg = api_settings(suite).posture
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    await push_once(suite, client)
                except RuntimeError as exc:  # configuration: say so each interval, do not crash the suite
                    log.error("%s", exc)
                except Exception:
                    log.exception("posture push failed")
                await asyncio.sleep(cfg.push_interval_seconds)

    return run

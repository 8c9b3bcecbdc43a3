"""The kit's Ed25519 signing key: made once per laptop (or at a path given), kept 0600 under the user's config
folder, never inside a case folder (a case carries only the public key)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from field.errors import FieldError


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "soc-suite" / "field" / "kit-ed25519.pem"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def load_or_create(path: Path | None, case_dir: Path | None = None) -> tuple[Ed25519PrivateKey, bool]:
    """(the key, made now). A key file readable by others, or a path inside the case folder, is refused."""
    path = Path(path) if path else default_key_path()
    if case_dir is not None and _inside(path.absolute(), Path(case_dir).absolute()):
        raise FieldError(f"key {path}: the signing key must not be kept inside the case folder")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return key, True
    if not stat.S_ISREG(st.st_mode):
        raise FieldError(f"key {path}: not a regular file")
    if st.st_mode & 0o077:
        raise FieldError(f"key {path}: readable by others (mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        try:
            key = serialization.load_pem_private_key(fh.read(64 * 1024), password=None)
        except ValueError as exc:
            raise FieldError(f"key {path}: not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FieldError(f"key {path}: not an Ed25519 key")
    return key, False


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_id(public: str) -> str:
    """A short fingerprint of a public key (what a person compares): SHA-256 of the raw key, first 16 hex digits."""
    return hashlib.sha256(base64.b64decode(public)).hexdigest()[:16]


def public_from_text(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise FieldError("the manifest's public key is not an Ed25519 key") from exc

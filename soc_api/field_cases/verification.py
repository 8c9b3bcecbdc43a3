"""What the province can say about a received case: whether the manifest's signature holds, whether the kit that
signed it is one the province trusts, and for each file of the manifest whether the copy received is the one sealed.

Per file: ``ok`` (the copy held has the manifest's size and SHA-256, and no other copy was ever offered),
``changed`` (a copy that differs from the manifest arrived — held, or offered beside a good copy, which is never
replaced by it — or the held copy changed on the province's disk), ``missing`` (nothing arrived). ``unexpected``:
names the sender tried to upload that the manifest does not list. ``ok`` for the whole case means the signature
holds and every file is ok; whether the kit is trusted is said beside it (``key_trusted``), not folded in.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from soc import ecs
from soc_api.field_cases.folder import CaseFolder

LISTED = 1000  # names listed per outcome in a verification (all are counted)


def kinds(manifest: dict) -> dict[str, str]:
    """What each evidence file is, from the manifest's collection log (evtx, pcap, log, file)."""
    out = {}
    for entry in manifest.get("collections") or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("kind"), str):
            out[entry["path"]] = entry["kind"][:20]
    return out


def kind_of(name: str, collected: dict[str, str]) -> str:
    if name in collected:
        return collected[name]
    top = PurePosixPath(name).parts[0]
    return {"derived": "derived", "evidence": "file"}.get(top, "case")


def file_status(entry: dict, receipt: dict) -> str:
    held = receipt.get("held")
    if held is None and not receipt.get("offered"):
        return "missing"
    if held is not None and not receipt.get("offered") and \
            (held["sha256"], held["size"]) == (entry["sha256"], entry["size"]):
        return "ok"
    return "changed"


def file_states(folder: CaseFolder, manifest: dict, expected: dict[str, dict]) -> list[dict]:
    """Each file of the manifest with what the province holds of it, in manifest order."""
    collected = kinds(manifest)
    out = []
    for name, entry in expected.items():
        receipt = folder.receipt(name)
        held = receipt.get("held")
        out.append({"name": name, "size": entry["size"], "sha256": entry["sha256"],
                    "kind": kind_of(name, collected), "status": file_status(entry, receipt),
                    "received_sha256": held["sha256"] if held else None,
                    "offered_sha256": [o["sha256"] for o in receipt.get("offered") or [] if o.get("sha256")],
                    "bodies": receipt.get("bodies", 0), "bytes": receipt.get("bytes", 0)})
    return out


def rehash(folder: CaseFolder, expected: dict[str, dict]) -> None:
    """Hash every held copy again from the province's disk; a copy that changed there is recorded in its receipt
    (offered, ``at_rest``) and so reported as changed."""
    for name in expected:
        receipt = folder.receipt(name)
        held = receipt.get("held")
        if held is None:
            continue
        now = folder.rehash(name)
        if now is None or now != (held["size"], held["sha256"]):
            size, sha = now if now is not None else (None, None)
            receipt["offered"] = [*(receipt.get("offered") or []),
                                  {"sha256": sha, "size": size, "at": ecs.now_iso(), "by": "province",
                                   "at_rest": True}]
            receipt["held"] = {**held, "sha256": sha, "size": size}
            folder.write_receipt(receipt)


def verification(states: list[dict], unexpected: list[str], signature_valid: bool, key_trusted: bool,
                 rehashed: bool) -> dict:
    by_status: dict[str, list[str]] = {"ok": [], "changed": [], "missing": []}
    for state in states:
        by_status[state["status"]].append(state["name"])
    counts = {status: len(names) for status, names in by_status.items()} | {"unexpected": len(unexpected)}
    return {
        "ok": signature_valid and not (by_status["changed"] or by_status["missing"] or unexpected),
        "signature_valid": signature_valid, "key_trusted": key_trusted,
        "changed": by_status["changed"][:LISTED], "missing": by_status["missing"][:LISTED],
        "unexpected": unexpected[:LISTED], "counts": counts, "checked_at": ecs.now_iso(), "rehashed": rehashed,
    }

"""`soc rules`: what the suite's rules are and which of them run (``check``), and rule packs installed as files
(``install``, ``rollback``, ``packs``).

A running suite follows the current pack by itself (detections/active_rules.py watches the pointer these commands
write), so installing or rolling back needs no restart and no access to the suite: only to its data folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from soc.plugins import commands

rules_app = typer.Typer(help="Detection rules: which run and why, and rule packs.", no_args_is_help=True)

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file "
                                                     "(default: $SOC_CONFIG, ./soc.yaml, ./config/soc.yaml)")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of text")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"soc rules: {message}", err=True)
    raise typer.Exit(code)


def _placeholders(settings) -> dict[str, list[str]]:
    from detections.sigma.placeholders import placeholder_values
    from inventory.lookup import Inventory, InventoryError

    try:
        return placeholder_values(Inventory.load(settings.inventory.path), settings.detections.placeholders)
    except InventoryError as exc:
        _fail(str(exc))


def _exceptions(settings):
    from detections.active_rules import exceptions_path
    from detections.exceptions import NO_EXCEPTIONS, ExceptionsError, load_exceptions

    path = exceptions_path(settings.detections, settings.data_dir)
    if path is None:
        return NO_EXCEPTIONS
    try:
        return load_exceptions(path)
    except ExceptionsError as exc:
        _fail(str(exc))


def _packs(settings):
    from detections.packs import PackStore

    return PackStore.of(settings.detections, settings.data_dir)


def _current_pack(packs):
    from detections.packs import PackError

    try:
        return packs.current()
    except PackError as exc:
        typer.echo(f"soc rules: {exc}; the suite runs its own rules only", err=True)
        return None


# --- check ---------------------------------------------------------------------------------------------------------
@rules_app.command("check")
def rules_check(
    rules: Annotated[Optional[list[str]], typer.Option("--rules", help="rule folders to check as a rule pack "
                                                       "would be, beside the suite's own rules (default: the current "
                                                       "pack)")]
    = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per rule")] = False,
) -> None:
    """Every rule: enabled or disabled by the rule selection and why, loaded or failed and why, its exceptions."""
    from detections.active_rules import load_rules_for, selected

    settings = commands().settings(config)
    det = settings.detections
    for folder in rules or []:
        if not Path(folder).is_dir() and not Path(folder).is_file():
            _fail(f"--rules {folder}: no such folder")
    exceptions = _exceptions(settings)
    pack = None if rules else _current_pack(_packs(settings))
    raw = load_rules_for(det, settings.data_dir, _placeholders(settings), pack, pack_dirs=list(rules or []))
    chosen = selected(raw, det, pack, pack_roots=[Path(r) for r in rules or []])
    now = time.time()
    names = {(r.meta.path, r.meta.id): r.meta.name for r in raw.rules + raw.correlations}  # type: ignore[operator]
    counts = {"enabled": 0, "loaded": 0, "failed": 0, "disabled": 0}
    for loaded, health in zip(raw.health, chosen.health):  # select() keeps the order, one entry for one
        enabled = health.status != "disabled"
        did_load = loaded.status == "loaded"
        counts["enabled" if enabled else "disabled"] += 1
        if enabled:
            counts["loaded" if did_load else "failed"] += 1
        own = exceptions.for_rule(health.id, names.get((health.path, health.id)))
        if as_json:
            typer.echo(json.dumps({
                "id": health.id, "title": health.title, "path": health.path, "kind": health.kind,
                "enabled": enabled, "why": health.selection, "loaded": did_load, "reason": loaded.reason,
                "level": health.level, "rule_status": health.rule_status, "logsource": health.logsource,
                "tags": health.tags, "warnings": health.warnings,
                "exceptions": [e.as_dict(now) for e in own]}, ensure_ascii=False))
            continue
        failure = f": {loaded.reason}" if not did_load else ""
        warn = f" (warning: {'; '.join(health.warnings)})" if health.warnings else ""
        typer.echo(f"{'enabled' if enabled else 'disabled':<8} {'loaded' if did_load else 'failed':<6} "
                   f"{health.kind:<11} {health.title} [{health.path}] — {health.selection}{failure}{warn}")
        for entry in own:
            typer.echo(f"    exception #{entry.number}: {entry.describe(now)} — {entry.reason} (by {entry.author})")
    known = [k for (_, rule_id), name in names.items() for k in (rule_id, name) if k]
    strays = exceptions.unknown_rules(known)
    for entry in strays:
        typer.echo(f"soc rules: exception #{entry.number} is for {entry.rule!r}, which is no rule loaded",
                   err=True)
    expired = sum(1 for e in exceptions.entries if e.expired(now))
    typer.echo(f"{len(chosen.health)} rules: {counts['enabled']} enabled ({counts['loaded']} loaded, "
               f"{counts['failed']} failed), {counts['disabled']} disabled; rule pack "
               f"{pack.id if pack else 'none'}; {len(exceptions)} exceptions ({expired} expired, "
               f"{len(strays)} for no known rule)", err=True)
    raise typer.Exit(1 if counts["failed"] else 0)


# --- packs ---------------------------------------------------------------------------------------------------------
def _compare(settings, before, after, progress: bool) -> Any:
    """The change report from ``before`` to ``after`` (pack versions or None), each loaded as the suite would. The
    version the suite is about to use is loaded last, so the rule cache holds it when the suite loads it."""
    from detections.active_rules import load_rules_for, selected
    from detections.pack_changes import compare

    det = settings.detections
    placeholders = _placeholders(settings)

    def shown(done: int, total: int) -> None:
        if progress and total and (done == total or done % 500 == 0):
            typer.echo(f"  loading rules: {done}/{total}", err=True)

    old = load_rules_for(det, settings.data_dir, placeholders, before, progress=shown)
    new = load_rules_for(det, settings.data_dir, placeholders, after, progress=shown)
    return compare(old, before.rules_dir if before else None, new, after.rules_dir if after else None,
                   before.id if before else None, after.id if after else None,
                   after_selected=selected(new, det, after))


def _switch_note(settings) -> str:
    interval = settings.detections.rules_reload_interval_seconds
    return (f"a running suite switches to it within {interval:g}s" if interval > 0 else
            "detections.rules_reload_interval_seconds is 0: a running suite takes it at its next start")


@rules_app.command("install")
def rules_install(
    path: Annotated[Path, typer.Argument(help="a SigmaHQ release archive (zip, tar, tar.gz) or a folder of rules")],
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="the archive's expected SHA-256 (else the "
                                                  "PATH.sha256 file beside it, in sha256sum format, when present)")]
    = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify and install a rule pack as a new version, show what changed, and make it current."""
    from detections.pack_archive import ArchiveRefused
    from detections.packs import PackError

    settings = commands().settings(config)
    packs = _packs(settings)
    try:
        with packs.locked():
            before = _current_pack(packs)
            version, extracted = packs.install(path, sha256)
            verification = version.verification
            changes = _compare(settings, before, version, progress=not as_json)
            packs.switch_to(version.id)
            removed = packs.prune()
    except (ArchiveRefused, PackError) as exc:
        _fail(f"{path}: not installed: {exc}")
    except OSError as exc:
        _fail(f"{path}: not installed: {exc.strerror or exc}")
    if as_json:
        typer.echo(json.dumps({"installed": version.id, "previous": before.id if before else None,
                               "sha256": verification.sha256 or None, "checked_by": verification.checked_by or None,
                               "rule_files": extracted.rule_files, "ignored": extracted.ignored,
                               "changes": changes.as_dict(), "removed_versions": removed}, ensure_ascii=False))
        return
    if verification.checked_by == "--sha256":
        typer.echo(f"verified: SHA-256 {verification.sha256} matches {verification.checked_by}")
    elif verification.checked_by:
        typer.echo(f"verified: SHA-256 {verification.sha256} matches {verification.checked_by} (a checksum file that "
                   "came with the archive shows it was not damaged, not that nobody changed both; --sha256 with the "
                   "publisher's checksum does)")
    elif verification.sha256:
        typer.echo(f"not verified (no PATH.sha256 beside it, no --sha256): SHA-256 {verification.sha256}")
    typer.echo(f"installed rule pack {version.id}: {extracted.rule_files} rule files "
               f"({extracted.ignored} other entries ignored)")
    for line in changes.lines():
        typer.echo(line)
    if removed:
        typer.echo(f"old versions removed: {', '.join(removed)}")
    typer.echo(f"current rule pack: {version.id}; {_switch_note(settings)}; `soc rules rollback` goes back to "
               f"{before.id if before else 'no pack'}")


@rules_app.command("rollback")
def rules_rollback(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Go back to the rule pack that was current before this one (a running suite follows)."""
    from detections.packs import PackError

    settings = commands().settings(config)
    packs = _packs(settings)
    try:
        with packs.locked():
            was, now = packs.rollback()
            changes = _compare(settings, packs.version(was), packs.version(now), progress=not as_json)
    except PackError as exc:  # as install: 2 for "nothing was done"
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"previous": was, "current": now, "changes": changes.as_dict()}, ensure_ascii=False))
        return
    for line in changes.lines():
        typer.echo(line)
    shown = now or "none (the suite's own rules only)"
    typer.echo(f"current rule pack: {shown}, was {was or 'none'}; {_switch_note(settings)}")


@rules_app.command("packs")
def rules_packs(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The rule pack versions kept, and which is current."""
    from detections.packs import PackError

    settings = commands().settings(config)
    packs = _packs(settings)
    try:
        pointer = packs.pointer()
    except PackError as exc:
        _fail(str(exc))
    versions = [v.describe() for v in packs.versions()]
    if as_json:
        typer.echo(json.dumps({"current": pointer.current, "previous": pointer.previous, "versions": versions}))
        return
    for v in versions:
        mark = "*" if v["id"] == pointer.current else " "
        typer.echo(f"{mark} {v['id']}  {v.get('rule_files')} rule files  from {v.get('source')}  "
                   f"({'verified by ' + v['checked_by'] if v.get('checked_by') else 'not verified'})")
    typer.echo(f"current: {pointer.current or 'none'}; rollback goes to: "
               f"{(pointer.previous[-1] or 'no pack') if pointer.previous else 'nothing'}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")


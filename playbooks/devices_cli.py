"""`soc devices ...`: the managed devices and their pinned SSH host keys.

The suite connects only to a device whose SSH host key is recorded in its known-hosts file (``known_hosts_file``,
default ``<data_dir>/known_hosts``). ``soc devices trust NAME`` fetches the key the device presents at its management
address (the SSH key exchange only: no login, no credential sent), shows its SHA256 fingerprint as ``ssh-keygen -lf``
does, and records it once the operator confirms — or at once when ``--fingerprint`` names it (a fingerprint read on
the device's own console, out of band). ``soc devices list`` shows each device with its pinned fingerprint.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

devices_app = typer.Typer(help="Managed devices: pin their SSH host keys (trust), list them.", no_args_is_help=True)

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")]


def register(app: typer.Typer) -> None:
    app.add_typer(devices_app, name="devices")


def _fail(message: str, code: int = 1):
    typer.echo(f"soc: {message}", err=True)
    raise typer.Exit(code)


def _load(config: str | None):
    """The inventory, the playbook settings and the known-hosts file of the configuration."""
    from inventory.lookup import Inventory, InventoryError
    from playbooks.connections import KnownHosts
    from playbooks.settings import known_hosts_path, load_playbook_settings
    from soc.plugins import commands

    settings = commands().settings(config)
    try:
        pb_settings = load_playbook_settings(settings)
        inventory = Inventory.load(settings.inventory.path)
    except InventoryError as exc:
        _fail(str(exc), 2)
    return inventory, pb_settings, KnownHosts(known_hosts_path(pb_settings, settings.data_dir))


def _transport(device) -> str:
    from playbooks.drivers import DriverError, get_driver

    try:
        return get_driver(device.driver).transport
    except DriverError:
        return "netmiko"


def _pinned(known_hosts, device) -> list:
    from playbooks.connections import KnownHostsError

    try:
        return known_hosts.pinned(device)
    except KnownHostsError as exc:
        _fail(str(exc), 2)


def _describe(info) -> str:
    # ssh-keygen -lf prints "256 SHA256:… comment (ED25519)"
    return f"{info.bits} {info.fingerprint} ({info.kind})"


@devices_app.command("list")
def list_devices(check: Annotated[bool, typer.Option("--check", help="also connect to each device (key exchange "
                                                     "only) and compare the key it presents")] = False,
                 config: ConfigOption = None) -> None:
    """Each managed device with its management address and its pinned host key, or "not pinned"."""
    from playbooks.connections import HostKeyInfo, fetch_host_key

    inventory, pb_settings, known_hosts = _load(config)
    typer.echo(f"known hosts: {known_hosts.path}")
    unpinned = 0
    for device in sorted(inventory.devices.values(), key=lambda d: d.id):
        where = f"{device.management_address}:{device.port}"
        if _transport(device) != "netmiko":
            api = f"{device.management_address}:{4444 if device.port == 22 else device.port}"  # SophosApiSession
            typer.echo(f"{device.id:<24} {api:<22} {device.driver:<10} HTTPS API: its TLS certificate is "
                       f"verified, no SSH key to pin")
            continue
        pinned = _pinned(known_hosts, device)
        if not pinned:
            unpinned += 1
        shown = ", ".join(_describe(p) for p in pinned) if pinned else "not pinned"
        line = f"{device.id:<24} {where:<22} {device.driver:<10} {shown}"
        if check:
            try:
                key = fetch_host_key(device.management_address, device.port, pb_settings.connect_timeout_seconds,
                                     prefer=[p.name for p in pinned])
            except Exception as exc:
                line += f"  [cannot check: {type(exc).__name__}: {exc}]"
            else:
                presented = HostKeyInfo.of(key)
                if not pinned:
                    line += f"  [presents {_describe(presented)}]"
                elif any(p.fingerprint == presented.fingerprint for p in pinned):
                    line += "  [matches]"
                else:
                    line += f"  [CHANGED: presents {_describe(presented)}]"
        typer.echo(line)
    if unpinned:
        typer.echo(f"{unpinned} device(s) not pinned: the suite will not connect to them until "
                   f"`soc devices trust NAME` records their key")


@devices_app.command("trust")
def trust(name: Annotated[str, typer.Argument(help="the device's id in the inventory")],
          yes: Annotated[bool, typer.Option("--yes", "-y", help="record without asking")] = False,
          fingerprint: Annotated[Optional[str], typer.Option(
              "--fingerprint", help="the fingerprint read on the device itself (SHA256:… or MD5:aa:bb:…): the key "
                                    "is recorded only if it is this one")] = None,
          replace: Annotated[bool, typer.Option("--replace", help="replace a different key recorded before (the "
                                                "device was reinstalled or its key regenerated)")] = False,
          config: ConfigOption = None) -> None:
    """Fetch the device's SSH host key (no login), show its fingerprint and record it in the known-hosts file."""
    from playbooks.connections import HostKeyInfo, fetch_host_key, host_key_name

    inventory, pb_settings, known_hosts = _load(config)
    device = inventory.devices.get(name)
    if device is None:
        _fail(f"no device {name!r} in the inventory {inventory.source}; devices: "
              f"{', '.join(sorted(inventory.devices)) or 'none'}", 2)
    if _transport(device) != "netmiko":
        _fail(f"device {name} ({device.driver}) is driven through its HTTPS API, whose TLS certificate is verified; "
              f"it has no SSH host key to pin", 2)
    where = f"{device.management_address}:{device.port}"
    pinned = _pinned(known_hosts, device)
    try:
        key = fetch_host_key(device.management_address, device.port, pb_settings.connect_timeout_seconds,
                             prefer=[p.name for p in pinned])
    except Exception as exc:
        _fail(f"cannot fetch the host key of {name} at {where}: {type(exc).__name__}: {exc}")
    presented = HostKeyInfo.of(key)
    typer.echo(f"device {name} at {where} presents this SSH host key:")
    typer.echo(f"  {_describe(presented)}")
    typer.echo(f"  {presented.md5}")
    if any(p.fingerprint == presented.fingerprint for p in pinned):
        typer.echo(f"already pinned in {known_hosts.path}: nothing to do")
        return
    if pinned:
        typer.echo(f"WARNING: {name} presents a different key from the one recorded in {known_hosts.path}: "
                   f"{', '.join(_describe(p) for p in pinned)}. Someone may be impersonating the device.", err=True)
        if not replace:
            _fail(f"not recorded. If the device's key was changed on purpose, check the new fingerprint on the device "
                  f"itself and run `soc devices trust {name} --replace --fingerprint {presented.fingerprint}`")
    if fingerprint is not None:
        if not presented.matches(fingerprint):
            _fail(f"REFUSED: {name} at {where} presents {presented.fingerprint}, not the expected {fingerprint.strip()}"
                  f" — someone may be impersonating the device, or the fingerprint was mistyped. Nothing recorded.")
        typer.echo(f"the key matches the expected fingerprint {fingerprint.strip()}")
    elif not yes:
        typer.echo("Compare it with the fingerprint shown on the device's own console (for a Linux device: "
                   "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).")
        if not typer.confirm(f"Record this key for {name}?", default=False):
            _fail("not recorded")
    known_hosts.record(device.management_address, device.port, key, replace=bool(pinned))
    typer.echo(f"recorded {host_key_name(device.management_address, device.port)} {presented.name} "
               f"{presented.fingerprint} in {known_hosts.path}")

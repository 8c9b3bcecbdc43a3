"""What the Linux drivers (nftables, iptables) share: commands run in a shell whose exit status is read back."""

from __future__ import annotations

import re

from playbooks.drivers.base import Driver, DriverError, Session

RC_MARK = "SOC_RC="
_RC = re.compile(r"SOC_RC=(\d+)")


def with_status(command: str) -> str:
    # A shell says nothing on success; the exit status is the only reliable answer.
    return f'{command}; echo "{RC_MARK}$?"'


def split_status(answer: str) -> tuple[str, int | None]:
    found = list(_RC.finditer(answer))
    if not found:
        return answer.strip(), None
    last = found[-1]
    return (answer[:last.start()] + answer[last.end():]).strip(), int(last.group(1))


class LinuxDriver(Driver):
    config_mode = False

    def run(self, session: Session, command: str, *, phase: str, ok: tuple[int, ...] = (0,)) -> tuple[str, int]:
        answer, status = split_status(session.send(with_status(command), phase=phase))
        if status is None:
            raise DriverError(f"no exit status in the answer to {command!r}: {answer[:200]!r}")
        if status not in ok:
            raise DriverError(f"{command!r} failed (exit {status}): {answer.strip()[:300]}")
        return answer, status

    def observe(self, session, op, *, phase: str = "check"):
        answers = [self.run(session, c, phase=phase, ok=(0, 1))[0] for c in self.show_commands(op)]
        return self.read(op, answers)

    def apply(self, session, commands: list[str], *, phase: str, comment: str = "") -> str:
        return "\n".join(self.run(session, c, phase=phase)[0] for c in commands)

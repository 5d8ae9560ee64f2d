"""Run one platform service that dies exactly between a database write and its acknowledgement.

    python -m tests.chaos.crashpoint notify 20

runs ``huisheng service notify`` unchanged, except that the 20th successful write of
the chosen kind ends the process with ``os._exit(137)`` — what SIGKILL does —
right after the write returned and before anything else: before the reliable
handler records the event as done and acks it (notify's inbox message, tickets'
record of a volunteer's step), or before the RPC reply goes out (a new ticket). Only this
process is patched, by the suite, at run time; the kernel and services are not
changed. The default ``huisheng service`` gives the SIGKILL tests their realism;
this gives them a deterministic case.
"""

from __future__ import annotations

import os
import sys

import kernel.runner  # noqa: F401  (monkey-patches eventlet first, as `huisheng service` does)

CRASH_EXIT = 137
POINTS = {
    # service: [(module, class, method, wrote(result, args): did this call write?)]
    # notify stores an inbox message carrying its echo's record, delivered (True for a new one).
    "notify": [("services.notify.repository", "InboxRepository", "deliver", lambda result, args: result)],
    "tickets": [("services.tickets.repository", "TicketRepository", "add", lambda result, args: result is args[0]),
                # record_entry(community, ticket_id, entry) inserts a volunteer step's record (a redelivery
                # collides); older versions named it record_echo and recorded echo outcomes too
                ("services.tickets.repository", "TicketRepository", "record_entry", lambda result, args: True),
                ("services.tickets.repository", "TicketRepository", "record_echo", lambda result, args: True)],
}


def arm(service: str, after: int) -> None:
    """Make the ``after``-th write (counted over the service's crash points) end the process."""
    import importlib

    written = [0]
    armed = 0
    for module_name, class_name, method_name, wrote in POINTS[service]:
        cls = getattr(importlib.import_module(module_name), class_name, None)
        original = getattr(cls, method_name, None)
        if original is None:  # not in this version of the service
            continue
        armed += 1

        def crashing(self, *args, _original=original, _wrote=wrote, **kwargs):
            result = _original(self, *args, **kwargs)
            if _wrote(result, args):
                written[0] += 1
                if written[0] >= after:
                    sys.stdout.flush()
                    os._exit(CRASH_EXIT)  # the write is durable; its ack or reply never happens
            return result

        setattr(cls, method_name, crashing)
    if not armed:  # a crash point that silently vanished would make the deterministic scenario a no-op
        raise SystemExit(f"crashpoint: none of {service}'s write methods exists: update tests/chaos/crashpoint.py")


def main(argv: list[str]) -> int:
    service, after = argv[0], int(argv[1])
    arm(service, after)
    return kernel.runner.main(service)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

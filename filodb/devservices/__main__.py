"""``python -m filodb.devservices up|down|env [kafka] [cassandra]`` (``scripts/services``)."""

from __future__ import annotations

import sys

from filodb.devservices.base import SERVICES, ServiceError, ensure, exports, running, stop

USAGE = "usage: scripts/services up|down|env [kafka] [cassandra]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "down", "env"):
        print(USAGE, file=sys.stderr)
        return 2
    names = argv[1:] or list(SERVICES)
    bad = [n for n in names if n not in SERVICES]
    if bad:
        print(f"unknown service {bad[0]!r} (have: {', '.join(SERVICES)})\n{USAGE}", file=sys.stderr)
        return 2
    try:
        for n in names:
            if argv[0] == "up":
                print(f"# {n}: starting (first run downloads jars with Maven)", file=sys.stderr)
                print(exports(ensure(n)), flush=True)
            elif argv[0] == "down":
                print(f"# {n}: {'stopped' if stop(n) else 'was not running'}", file=sys.stderr)
            else:
                st = running(n)
                if st:
                    print(exports(st["env"]))
    except ServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

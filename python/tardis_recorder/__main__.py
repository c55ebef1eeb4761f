"""python3 -m tardis_recorder verify RUN -- check a run directory (format v1)."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("verify",):
        print("usage: python3 -m tardis_recorder verify RUN [--quiet]", file=sys.stderr)
        return 2
    from .verify import main as verify_main
    return verify_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""The `acqd` command and `python -m acqd`. Ctrl-C while acqd's modules load (its first half second)
ends with one line and exit 130, as it does later (`acqd.cli.main`), not with a traceback."""

import sys


def entry() -> None:
    try:
        from acqd.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("acqd: interrupted\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    entry()

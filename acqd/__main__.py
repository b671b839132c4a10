"""The `acqd` command and `python -m acqd`. Ctrl-C while acqd's modules load (its first half second)
ends with one line and exit 130, as it does later (`acqd.cli.main`), not with a traceback. A reload
(SIGHUP) asked while `acqd run` starts is held and applied once the daemon runs: its default action
ended the process (exit 129, nothing said)."""

import sys


def entry() -> None:
    if sys.argv[1:2] == ["run"]:
        from acqd.systemd import hold_reloads

        hold_reloads()
    try:
        from acqd.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("acqd: interrupted\n")
        raise SystemExit(130) from None
    main()


if __name__ == "__main__":
    entry()

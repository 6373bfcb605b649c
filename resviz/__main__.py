import sys

try:
    from resviz.cli import main
except KeyboardInterrupt:  # Ctrl-C while the first modules load: an interrupt, not a traceback
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())

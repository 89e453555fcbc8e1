"""``python -m exactcomp`` runs the CLI (a Ctrl-C even during start-up exits cleanly)."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:
    sys.stderr.write("exactcomp: interrupted; nothing was written\n")
    sys.exit(130)

sys.exit(main())

"""A worker started by fork+exec: ``python execworker.py OUT``.

It asks workerid who it is, writes the answer (plus its parent PID) to
``OUT/<pid>.json`` and idles until killed. Nothing in its command line or
environment says which worker it is: only workerid can tell.
"""

from __future__ import annotations

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _report import write


def main() -> None:
    out = sys.argv[1]
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import workerid

    ident = workerid.identity().as_dict()
    ident["ppid"] = os.getppid()
    write(os.path.join(out, f"{os.getpid()}.json"), ident)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()

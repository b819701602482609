"""``python -m pipeline_core.notify.call module:function [file]``: call a notification's callable
with the notification (JSON on standard input) as its one argument (``file``: the DAG file
a function of a Python DAG file lives in). Exit 0 when it
returned, ``EXIT_BAD_REFERENCE`` when it cannot be imported or is not callable, 1 when it
raised (its traceback on standard error)."""

from __future__ import annotations

import json
import sys
import traceback

from pipeline_core.engine.tasks.callables import CallableRef, resolve
from pipeline_core.notify.targets import EXIT_BAD_REFERENCE


def main(argv: list[str]) -> int:
    try:
        module, _, qualname = argv[0].partition(":")
        function = resolve(CallableRef(module, qualname, argv[1] if len(argv) > 1 else None))
    except Exception as exc:  # an import error of any kind is the reference's fault
        sys.stderr.write(f"cannot call {argv[0] if argv else '(nothing)'}: {exc}\n")
        return EXIT_BAD_REFERENCE
    notification = json.loads(sys.stdin.buffer.read() or b"{}")
    try:
        function(notification)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

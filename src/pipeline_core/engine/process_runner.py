"""Runs one python task callable in its own interpreter: ``python -m
pipeline_core.engine.process_runner REQUEST.json RESPONSE.json``."""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from typing import Any


def main(request_path: str, response_path: str) -> int:
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    sys.path[:0] = [p for p in request["path"] if p not in sys.path]
    module_name, _, attribute = request["callable"].partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
        value = target(**request["kwargs"])
        outcome = {"value": value}
        text = json.dumps(outcome)
    except Exception as exc:
        traceback.print_exc()
        text = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    with open(response_path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

"""Run one documentation page's ```python blocks in order, in this interpreter (for test_doc_samples.py).

Usage: ``python doc_sample_runner.py BLOCKS.json``, where the file holds a list of
``{"path": <the .md file>, "line": <line of the block's first code line>, "code": <the block>}``.

Each block is compiled under the page's path with the page's line numbers, so a traceback names
the doc and shows its line. Blocks share one namespace, as a reader going down the page would.
After the last block lmgate's callbacks are flushed, and a callback that raised fails the run:
callbacks run on lmgate's own threads, where an error would not reach the exit status.
"""

from __future__ import annotations

import json
import os
import sys

from fakes import install_loopback_guard

FLUSH_TIMEOUT_S = 10.0


def main(blocks_file: str) -> int:
    with open(blocks_file, encoding="utf-8") as f:
        blocks = json.load(f)
    install_loopback_guard()  # a sample that reaches beyond loopback fails instead of leaving the machine
    # run as a reader runs a saved sample: its own directory (the temp cwd) first on the path, not tests/
    sys.path[0] = os.getcwd()
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        print(f"--- running {block['path']}:{block['line']}", file=sys.stderr, flush=True)
        code = compile("\n" * (block["line"] - 1) + block["code"], block["path"], "exec")
        exec(code, namespace)
    lmgate = sys.modules.get("lmgate")
    if lmgate is None:
        return 0
    if not lmgate.flush_callbacks(FLUSH_TIMEOUT_S):
        print(f"doc samples: callbacks still pending after {FLUSH_TIMEOUT_S} s", file=sys.stderr)
        return 1
    stats = lmgate.callback_stats()
    if stats["errors_total"]:
        print(f"doc samples: callbacks raised: {stats['errors']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

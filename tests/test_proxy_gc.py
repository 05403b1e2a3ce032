"""``lmgate serve`` tunes its garbage collector once it has started (issue 18: at c=50 the default
young threshold and full-heap walks cost about 15% of the proxy's CPU). Checked in a child
process: freezing the test process's own heap would change every other test."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from lmgate.proxy.server import GC_YOUNG_THRESHOLD

SERVER = textwrap.dedent(
    """
    import gc, json, uvicorn
    from lmgate.proxy.server import _server_class

    before = gc.get_threshold()

    async def app(scope, receive, send):
        while True:  # the lifespan only: no request is made
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    class Probe(_server_class()):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]), flush=True)
            self.should_exit = True

    Probe(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="error")).run()
    """
)


def test_served_process_freezes_its_heap_and_collects_young_objects_less_often() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SERVER], capture_output=True, text=True, timeout=60, check=True
    )
    before, after, frozen = json.loads(out.stdout.strip().splitlines()[-1])
    assert before[0] < GC_YOUNG_THRESHOLD  # CPython's default: 700
    assert after == [GC_YOUNG_THRESHOLD, before[1], before[2]]
    assert frozen > 10_000  # the modules and objects that live as long as the process


def test_a_collector_switched_off_stays_off() -> None:
    code = "import gc; gc.disable(); gc.set_threshold(0); from lmgate.proxy.server import tune_gc; tune_gc(); print(gc.get_threshold()[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "0"

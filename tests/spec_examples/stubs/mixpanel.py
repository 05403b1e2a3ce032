"""Stand-in for the mixpanel module the spec's sample imports: records calls to a file."""

import json
import os


def track(event, properties):
    with open(os.environ["STUB_RECORD_FILE"], "a") as f:
        f.write(json.dumps({"mixpanel.track": event, "keys": sorted(properties)}) + "\n")

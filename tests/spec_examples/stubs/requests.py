"""Stand-in for requests in the spec's 'Send to External Service' sample: records the post, sends nothing."""

import json
import os


def post(url, json=None, **kwargs):  # noqa: A002 - mirrors requests.post
    import json as _json

    with open(os.environ["STUB_RECORD_FILE"], "a") as f:
        f.write(_json.dumps({"requests.post": url, "json": json}) + "\n")

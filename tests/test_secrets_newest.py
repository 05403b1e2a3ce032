"""The remembered secrets are a bounded LRU (``remember_secret``): each call touches its key so
that 512 others cannot push it out. Touching the newest entry again is skipped (issue 18: once
a call, under a lock); these hold the order to the plain LRU's. Run in a fresh interpreter, so
the test's 512 secrets neither push out nor mask anything of the other tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCENARIOS = textwrap.dedent(
    """
    from lmgate import _secrets as s

    MAX = s._MAX_REMEMBERED_SECRETS
    def masked(secret):
        return secret not in s.scrub(f"x {secret} y")
    def others(tag, n):
        for i in range(n):
            s.remember_secret(f"zq-{tag}-{i:06d}-other")

    # the newest touched again, then MAX others: it is the oldest, so it goes (as in a plain LRU)
    s.remember_secret("zq-first-secret-aaaa")
    s.remember_secret("zq-first-secret-aaaa")
    others("a", MAX)
    assert not masked("zq-first-secret-aaaa")

    # an older entry touched is moved to the newest end: MAX - 1 more do not push it out
    s.remember_secret("zq-second-secret-bbb")
    others("b", MAX - 1)
    s.remember_secret("zq-second-secret-bbb")  # the oldest now: touched, it is the newest
    others("c", MAX - 1)
    assert masked("zq-second-secret-bbb")
    others("d", 1)
    assert not masked("zq-second-secret-bbb")

    # the newest, then another added, then the first touched: it is moved again
    s.remember_secret("zq-third-secret-cccc")
    s.remember_secret("zq-fourth-secret-ddd")
    s.remember_secret("zq-third-secret-cccc")
    assert list(s._known)[-2:] == ["zq-fourth-secret-ddd", "zq-third-secret-cccc"]
    others("e", MAX - 1)
    assert masked("zq-third-secret-cccc") and not masked("zq-fourth-secret-ddd")
    print("ok")
    """
)


def test_touching_the_newest_keeps_the_lru_order() -> None:
    done = subprocess.run([sys.executable, "-c", _SCENARIOS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

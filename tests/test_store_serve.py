"""The ``store`` logger in a real ``lmgate serve`` (official openai client), and ``lmgate logs``
run as a subprocess on the file it wrote."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
from fakes import FakeProvider, Reply
from test_proxy_server import Served

pytest.importorskip("sqlalchemy")
pytest.importorskip("starlette")

MASTER = "sk-master-store-test"
TAIL_HEADER = ["time", "call_id", "model", "provider", "status", "tokens", "cost", "latency_ms"]
UPSTREAM = "sk-upstream-store-test"


def write_config(tmp: Path, fake: FakeProvider, db: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: os.environ/STORE_UPSTREAM_KEY}}
        general_settings:
          master_key: os.environ/STORE_MASTER_KEY
        litellm_settings:
          callbacks: ["store"]
        callback_settings:
          store: {{path: {db}, retention_days: 30}}
    """)
    )
    return path


class Traffic:
    def __init__(self, db: Path, ids: dict[str, str], tmp: Path) -> None:
        self.db, self.ids, self.tmp = db, ids, tmp


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    """A proxy that served sync, streamed and failed calls, then stopped (SIGTERM: the exit flush)."""
    tmp = tmp_path_factory.mktemp("store-serve")
    db = tmp / "logs.sqlite3"
    with FakeProvider() as fake:
        served = Served(
            write_config(tmp, fake, db), tmp, {"STORE_UPSTREAM_KEY": UPSTREAM, "STORE_MASTER_KEY": MASTER}
        )
        ids: dict[str, str] = {}
        try:
            served.wait_ready()
            client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=MASTER, max_retries=0)
            for i in range(5):
                client.chat.completions.create(
                    model="fast", messages=[{"role": "user", "content": f"hi {i}"}], user=f"user-{i % 2}"
                )
            raw = client.chat.completions.with_raw_response.create(
                model="fast", messages=[{"role": "user", "content": "find-me-later"}]
            )
            ids["search"] = raw.headers["x-litellm-call-id"]
            stream = client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "s"}], stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            fake.enqueue(Reply(status=400))
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "bad"}])
        finally:
            code = served.stop()
        assert code == 0, served.stderr
    yield Traffic(db, ids, tmp)


def logs(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmgate", "logs", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_every_call_through_the_proxy_is_stored_once(traffic: Traffic) -> None:
    from lmgate.store import Filters, Page, open_store

    store = open_store(str(traffic.db))
    try:
        rows = store.query(Filters(), Page(limit=100))
        assert len(rows) == 8 and len({r["call_id"] for r in rows}) == 8
        assert sum(r["status"] == "failure" for r in rows) == 1
        assert sum(bool(r["stream"]) for r in rows) == 1
        assert {r["model_group"] for r in rows} == {"fast"}
        assert traffic.ids["search"] in {r["call_id"] for r in rows}
        assert all(r["key_hash"] for r in rows)  # the caller's key, hashed: never the key itself
        # every byte on disk, the write-ahead log included
        on_disk = b"".join(p.read_bytes() for p in traffic.db.parent.glob(traffic.db.name + "*"))
        assert MASTER.encode() not in on_disk and UPSTREAM.encode() not in on_disk
        assert b"find-me-later" in on_disk  # the check can see what is stored
    finally:
        store.close()


def test_logs_tail_piped_is_tab_separated(traffic: Traffic) -> None:
    result = logs(traffic.db, "tail", "-n", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == [
        "time",
        "call_id",
        "model",
        "provider",
        "status",
        "tokens",
        "cost",
        "latency_ms",
    ]
    assert len(lines) == 4 and lines[-1].split("\t")[4].startswith("failure:")  # newest last
    assert len(logs(traffic.db, "tail", "--status", "success", "-n", "100").stdout.splitlines()) == 8
    found = logs(traffic.db, "tail", "--search", "find-me-later").stdout.splitlines()
    assert len(found) == 2 and found[1].split("\t")[1] == traffic.ids["search"]
    assert len(logs(traffic.db, "tail", "--user", "user-1").stdout.splitlines()) == 3
    assert len(logs(traffic.db, "tail", "--since", "1h").stdout.splitlines()) == 9
    assert len(logs(traffic.db, "tail", "--until", "2000-01-01").stdout.splitlines()) == 1
    bad = logs(traffic.db, "tail", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_logs_tail_on_a_terminal_is_aligned(traffic: Traffic) -> None:
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmgate", "logs", "--db", str(traffic.db), "tail", "-n", "4"],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    lines = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    assert len(lines) == 5 and "\t" not in "".join(lines)
    # every column starts at the header's offset: two spaces before it on every line
    for column in ("call_id", "model", "status"):
        at = lines[0].index(column)
        assert all(line[at - 2 : at] == "  " and line[at] != " " for line in lines), lines


def test_logs_show(traffic: Traffic) -> None:
    result = logs(traffic.db, "show", traffic.ids["search"])
    assert result.returncode == 0, result.stderr
    head, _, payload = result.stdout.partition("payload:\n")
    assert "call_id" in head and traffic.ids["search"] in head and "model_group" in head
    assert orjson.loads(payload)["messages"] == [{"role": "user", "content": "find-me-later"}]
    missing = logs(traffic.db, "show", "no-such-call")
    assert missing.returncode == 1 and "no call 'no-such-call'" in missing.stderr


def test_logs_stats(traffic: Traffic) -> None:
    result = logs(traffic.db, "stats", "--by", "model")
    assert result.returncode == 0, result.stderr
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header == [
        "model",
        "requests",
        "errors",
        "total_tokens",
        "cost",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "cache_hit_rate",
    ]
    assert len(rows) == 1 and rows[0][1] == "8" and rows[0][2] == "1" and rows[0][8] == "0.0%"
    by_user = {
        r.split("\t")[0]: r.split("\t")[1]
        for r in logs(traffic.db, "stats", "--by", "user").stdout.splitlines()[1:]
    }
    assert by_user["user-0"] == "3" and by_user["user-1"] == "2"
    assert logs(traffic.db, "stats", "--by", "day").stdout.count("\n") == 2


def test_logs_export(traffic: Traffic) -> None:
    as_csv = logs(traffic.db, "export", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert (
        len(rows) == 8 and {r["status"] for r in rows} == {"success", "failure"} and "payload" not in rows[0]
    )
    as_jsonl = logs(traffic.db, "export", "--format", "jsonl", "--status", "failure")
    records = [orjson.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert len(records) == 1 and records[0]["payload"]["status"] == "failure"


def test_logs_without_a_store_says_how_to_get_one(tmp_path: Path) -> None:
    """No store yet is no calls yet: empty answers (exit 0), a hint on stderr, and no file made."""
    result = logs(tmp_path / "none.sqlite3", "tail")
    assert result.returncode == 0 and 'callbacks: ["store"]' in result.stderr
    assert result.stdout.splitlines() == ["\t".join(TAIL_HEADER)]
    assert logs(tmp_path / "none.sqlite3", "stats", "--by", "team").stdout.startswith("team\trequests\t")
    assert logs(tmp_path / "none.sqlite3", "export", "--format", "csv").stdout.startswith("call_id,")
    assert logs(tmp_path / "none.sqlite3", "show", "x").returncode == 1
    assert not (tmp_path / "none.sqlite3").exists()


def test_logs_tail_follow_prints_calls_as_they_are_stored(tmp_path: Path) -> None:
    """``tail -f``: the last rows, then every row written later (in the order written), until stopped."""
    import select
    import signal

    from lmgate.store import open_store
    from lmgate.store.rows import row_from_payload

    def row(call_id: str, start: float, model: str = "m") -> dict:
        return row_from_payload(
            orjson.dumps(
                {
                    "litellm_call_id": call_id,
                    "startTime": start,
                    "endTime": start + 1,
                    "status": "success",
                    "model": model,
                    "metadata": {},
                }
            )
        )

    db = tmp_path / "logs.sqlite3"
    store = open_store(str(db))
    store.write([row("first", 1_700_000_000.0)])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmgate",
            "logs",
            "--db",
            str(db),
            "tail",
            "-f",
            "--interval",
            "0.05",
            "--model",
            "m",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        # Ctrl-C is how it stops; a runner started in the background (`cmd &` in a script)
        # hands its children SIGINT ignored, which Python then keeps: give it back
        preexec_fn=_sigint_default,
    )
    assert proc.stdout is not None
    try:
        pending = [b""]  # bytes read but not yet returned: a read may hold several lines

        def next_line() -> str:
            while b"\n" not in pending[0]:
                ready, _, _ = select.select([proc.stdout], [], [], 30)  # bounded: a hung follower fails
                assert ready, "tail -f printed nothing within 30 s"
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, "tail -f exited"
                pending[0] += chunk
            line, _, pending[0] = pending[0].partition(b"\n")
            return line.decode()

        assert next_line().startswith("time\t")
        assert next_line().split("\t")[1] == "first"
        # written later but started earlier: still printed (follow is by write order), other models are not
        store.write([row("other-model", 1_700_000_002.0, model="x"), row("late", 1_600_000_000.0)])
        assert next_line().split("\t")[1] == "late"
        store.write([row("later", 1_700_000_005.0)])
        assert next_line().split("\t")[1] == "later"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        proc.stdout.close()
        store.close()
    assert code == 0


def test_logs_data_dir_and_environment_pick_the_file(traffic: Traffic) -> None:
    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lmgate", "logs", *args, "tail", "-n", "100"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )

    by_option = run("--data-dir", str(traffic.db.parent), env={"LMGATE_DATA_DIR": "/nonexistent-lmgate"})
    by_env = run(env={"LMGATE_DATA_DIR": str(traffic.db.parent)})
    assert by_option.returncode == 0 and len(by_option.stdout.splitlines()) == 9
    assert by_env.stdout == by_option.stdout


def _sigint_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)

"""The store's writes in a child process (``writer: process``, loggers/store_process.py): the rows
are the ones the in-process writer makes, written by another process; a child that dies or
answers nonsense loses nothing and stores nothing twice; a program that exits without flushing
still has every call stored. Real child processes, real SQLite files, calls through the real
send path against the fake provider."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from fakes import Reply

import lmgate
from lmgate._callbacks.payload_facts import facts_record, facts_record_of, payload_from_facts
from lmgate._retry import RetryPolicy
from lmgate.loggers._env import LoggerConfigError
from lmgate.loggers.store import StoreLogger
from lmgate.loggers.store_process import ProcessStoreExporter
from lmgate.store import Filters, Page

pytest.importorskip("sqlalchemy")

KEY = "sk-test-store-writer"
FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


def params(fp, **kw):
    return {
        "model": "openai/gpt-4o-mini",
        "api_base": fp.base_url + "/v1",
        "api_key": KEY,
        "messages": [{"role": "user", "content": "hello writer"}],
        **kw,
    }


def rows_of(logger: StoreLogger) -> list[dict]:
    return logger.store.query(Filters(), Page(limit=1000))


def several_calls(fp) -> None:
    """Calls of every shape: plain, with metadata, tags, a user and parameters, streamed, failed,
    with a secret in the metadata, redacted."""
    lmgate.completion(**params(fp))
    lmgate.completion(
        **params(
            fp,
            user="alice",
            temperature=0.3,
            max_tokens=7,
            metadata={"tags": ["w", "x"], "team": "t", "nested": {"k": [1, 2.5, None, True]}},
        )
    )
    lmgate.completion(
        **params(fp, messages=[{"role": "user", "content": 'h\u00e9llo \u2028 \U0001f600 "q" \n'}])
    )
    assert "".join(c.choices[0].delta.content or "" for c in lmgate.completion(**params(fp, stream=True)))
    fp.enqueue(Reply(status=400))
    with pytest.raises(lmgate.exceptions.BadRequestError):
        lmgate.completion(**params(fp))
    lmgate.completion(**params(fp, metadata={"api_key": "sk-abcdefghijklmnopqrstuvwx", "tags": ["s"]}))
    lmgate.completion(**params(fp, metadata={"when": datetime.datetime(2026, 1, 2, 3, 4, 5), 1: "int key"}))
    lmgate.completion(**params(fp, metadata={"tags": "not-a-list"}))
    lmgate.completion(**params(fp, turn_off_message_logging=True))


def test_rows_are_written_by_a_child_process_and_equal_the_in_process_ones(tmp_path, fake_provider):
    in_process = StoreLogger(path=str(tmp_path / "thread.sqlite3"), spool="off", writer="thread")
    child = StoreLogger(path=str(tmp_path / "process.sqlite3"), spool="off", writer="process")
    lmgate.callbacks = [child, in_process]
    several_calls(fake_provider)
    assert in_process.flush(30) and child.flush(30)
    assert child.writer == "process" and isinstance(child.exporter, ProcessStoreExporter)
    assert child.exporter.pid not in (None, os.getpid())
    assert child.stats()["delivered"] == 9 and child.stats()["dropped_total"] == 0
    # the same calls (one call id each, both loggers saw them): the same rows, column for column,
    # whether the child built the payload from the call's facts or got it built
    theirs = sorted(rows_of(child), key=lambda r: r["call_id"])
    ours = sorted(rows_of(in_process), key=lambda r: r["call_id"])
    assert len(theirs) == 9 and "alice" in {r["end_user"] for r in theirs}
    assert theirs == ours
    # and the same stored payloads, byte for byte
    full = [(child.store.get(r["call_id"]), in_process.store.get(r["call_id"])) for r in theirs]
    assert all(a is not None and a == b for a, b in full)
    assert "sk-abcdefghijklmnopqrstuvwx" not in str(full)


class Summaries:
    """A sink that keeps each finished call's summary (reads nothing from it)."""

    def __init__(self) -> None:
        self.got: list = []

    def take(self, summary, event) -> None:
        self.got.append(summary)


def test_a_calls_facts_build_the_very_payload_or_are_not_taken(fake_provider):
    sink = Summaries()
    lmgate.callbacks = [sink]
    several_calls(fake_provider)
    deferred = []
    for summary in sink.got:
        record = facts_record(summary)
        if record is not None:
            assert b"\n" not in record and record.startswith(b'["lmgate.facts/2"')
            assert payload_from_facts(record) == summary.payload_json()
            deferred.append(summary)
    # plain, metadata and parameters, unicode, streamed: from their facts; the failure, the
    # secret to mask, the datetime and int key, the bad tags and the redacted call: built here
    assert len(sink.got) == 9 and len(deferred) == 4
    assert {s.status for s in deferred} == {"success"} and any(s.stream for s in deferred)


def facts_record_of_one_call(tmp_path) -> bytes:
    sink = Summaries()
    lmgate.callbacks = [sink]
    lmgate.completion(
        model="openai/gpt-4o-mini", mock_response="hi", messages=[{"role": "user", "content": "x"}]
    )
    lmgate.callbacks = []
    record = facts_record(sink.got[0])
    assert record is not None
    return record


def test_a_record_that_is_not_a_calls_facts_is_dropped_with_its_reason(tmp_path):
    logger = StoreLogger(path=str(tmp_path / "logs.sqlite3"), spool="off", writer="process")
    logger.enqueue_bytes(b'["lmgate.facts/0", 1]')
    # the right tag and length, a value of the wrong type where the payload's builder reads it
    damaged = orjson.loads(facts_record_of_one_call(tmp_path))
    damaged[-6] = "not usage"
    logger.enqueue_bytes(orjson.dumps(damaged))
    assert logger.flush(30)
    dropped = logger.stats()["dropped"]
    assert dropped["not_a_payload: not a call's facts record (lmgate.facts/2)"] == 1
    assert sum(dropped.values()) == 2 and logger.stats()["retried"] == 0


def first_format(summary) -> bytes:
    """The facts record of ``summary`` as the previous version wrote it (``lmgate.facts/1``: the
    messages' and the response's JSON as strings), encoded here as that version's code did."""
    from lmgate._callbacks.payload_facts import _plain_of

    usage, cost_breakdown, optional_params, _, hidden = summary.encodable()
    response = summary.response_json
    return orjson.dumps(
        [
            "lmgate.facts/1",
            *_plain_of(summary),
            usage,
            cost_breakdown,
            optional_params,
            (hidden or {}).get("additional_headers") or {},
            summary.messages_snapshot[0].decode(),
            response.decode() if response else None,
        ]
    )


def test_a_spool_line_of_the_first_facts_format_is_still_written_after_an_upgrade(tmp_path, fake_provider):
    """A segment the previous version left (facts records tagged ``lmgate.facts/1``) is adopted
    by this one: each line builds the very payload the call's summary builds, and is stored."""
    sink = Summaries()
    lmgate.callbacks = [sink]
    several_calls(fake_provider)
    lmgate.callbacks = []
    taken = [s for s in sink.got if facts_record(s) is not None]
    assert len(taken) == 4
    old = [first_format(s) for s in taken]
    assert all(payload_from_facts(line) == s.payload_json() for line, s in zip(old, taken, strict=True))
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-1-0ldf0rm1.wal").write_bytes(b"".join(line + b"\n" for line in old))
    logger = StoreLogger(path=str(tmp_path / "logs.sqlite3"), spool_dir=str(spool), writer="process")
    try:
        assert logger.flush(30)
        stats = logger.stats()
        assert stats["recovered"] == 4 and stats["delivered"] == 4 and stats["dropped_total"] == 0, stats
        stored = {r["call_id"]: logger.store.get(r["call_id"]) for r in rows_of(logger)}
        assert set(stored) == {s.call_id for s in taken}
        assert all(stored[s.call_id]["payload"] == orjson.loads(s.payload_json()) for s in taken)
    finally:
        logger.close(5)


def test_a_facts_record_carries_the_messages_and_response_json_as_they_are(fake_provider):
    """Format 2 writes the messages' and the response's JSON into the line as they are (no
    string escaping); the line is still one line of JSON, and a line cut or changed anywhere
    that makes it not add up is refused, never read as another call's facts."""
    sink = Summaries()
    lmgate.callbacks = [sink]
    lmgate.completion(**params(fake_provider, messages=[{"role": "user", "content": 'q"\n\u2028'}]))
    lmgate.callbacks = []
    (summary,) = sink.got
    record = facts_record(summary)
    assert record is not None and b"\n" not in record
    messages, response = summary.messages_snapshot[0], summary.response_json
    assert record.endswith(b"," + messages + b"," + response + b"]")
    facts = orjson.loads(record)  # JSON as a whole
    assert facts[:3] == ["lmgate.facts/2", len(messages), len(response)]
    assert facts[-2] == orjson.loads(messages) and facts[-1] == orjson.loads(response)
    assert payload_from_facts(record) == summary.payload_json()
    lengths = b"%d,%d," % (len(messages), len(response))
    damaged = [
        record[:-1],
        record[:-2] + b"]",
        record + b" ",
        record.replace(lengths, b"%d,%d," % (len(messages) + 1, len(response) - 1), 1),
        record.replace(lengths, b"%d,%d," % (len(messages), len(response) + 3), 1),
        record.replace(lengths, b"x,%d," % len(response), 1),
        record.replace(lengths, b"0,%d," % len(response), 1),
    ]
    for line in damaged:
        with pytest.raises(ValueError, match="not a call's facts record"):
            payload_from_facts(line)


def test_a_child_killed_between_batches_is_replaced(tmp_path, fake_provider):
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"),
        spool_dir=str(tmp_path / "spool"),
        writer="process",
        retry_policy=FAST,
    )
    lmgate.callbacks = [logger]
    lmgate.completion(**params(fake_provider))
    assert logger.flush(30)
    first = logger.exporter.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # found dead at the next batch, or dying under it: either way replaced
    lmgate.completion(**params(fake_provider))
    assert logger.flush(30)
    assert logger.exporter.pid not in (None, first)
    assert len(rows_of(logger)) == 2 and logger.stats()["delivered"] == 2


# A child that takes a batch and dies without answering (the first time only: a marker file), then
# runs the real writer: the batch is retried through a new child and stored once.
DIES_ONCE = textwrap.dedent("""
    import os, sys
    from lmgate.loggers import store_process as w
    marker = sys.argv[1]
    if not os.path.exists(marker):
        open(marker, "w").close()
        stdin = os.fdopen(0, "rb")
        w.read_frame(stdin)  # the settings
        w.read_frame(stdin)  # the batch, then gone without a word
        os._exit(1)
    raise SystemExit(w.main())
""")
# A child that answers every batch with nonsense (too few outcomes), after writing nothing.
ANSWERS_NONSENSE = textwrap.dedent("""
    import os, sys
    from lmgate.loggers import store_process as w
    stdin, stdout = os.fdopen(0, "rb"), os.fdopen(1, "wb")
    w.read_frame(stdin)
    while w.read_frame(stdin) is not None:
        w.write_frame(stdout, b"[]")
""")


def test_a_child_that_dies_mid_batch_makes_the_batch_retried_and_stored_once(tmp_path, fake_provider):
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"),
        spool_dir=str(tmp_path / "spool"),
        writer="process",
        batch_size=5,
        retry_policy=FAST,
    )
    logger.exporter.command = [sys.executable, "-c", DIES_ONCE, str(tmp_path / "died")]
    lmgate.callbacks = [logger]
    for _ in range(5):
        lmgate.completion(**params(fake_provider))
    assert logger.flush(60)
    assert (tmp_path / "died").exists()
    stats = logger.stats()
    assert stats["retried"] >= 5 and stats["delivered"] == 5 and stats["dropped_total"] == 0
    assert len({r["call_id"] for r in rows_of(logger)}) == len(rows_of(logger)) == 5


def test_a_child_that_answers_nonsense_keeps_the_records_pending(tmp_path, fake_provider):
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    logger.exporter.command = [sys.executable, "-c", ANSWERS_NONSENSE]
    lmgate.callbacks = [logger]
    lmgate.completion(**params(fake_provider))
    assert not logger.flush(1)  # retried, never counted as delivered
    stats = logger.stats()
    assert stats["delivered"] == 0 and stats["pending"] == 1 and stats["failing"] == "writer_process"
    logger.close(1)
    assert any(p.suffix == ".wal" for p in (tmp_path / "spool").iterdir())  # kept for the next process


# A child that takes the settings and a batch, then never answers (a database that hangs).
NEVER_ANSWERS = textwrap.dedent("""
    import os, threading
    from lmgate.loggers import store_process as w
    stdin = os.fdopen(0, "rb")
    w.read_frame(stdin)
    w.read_frame(stdin)
    threading.Event().wait()
""")


def test_closing_while_a_child_hangs_ends_and_keeps_the_records_spooled(tmp_path, fake_provider):
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    logger.exporter.command = [sys.executable, "-c", NEVER_ANSWERS]
    logger.exporter.close_timeout = 0.5
    lmgate.callbacks = [logger]
    lmgate.completion(**params(fake_provider))
    logger.processor.ship_now()
    assert not logger.close(0.5)  # returns: the hung child is killed, not waited for
    assert logger.stats()["spooled"] == 1
    lines = [p.read_bytes() for p in (tmp_path / "spool").iterdir() if p.suffix == ".wal"]
    assert sum(chunk.count(b"\n") for chunk in lines) == 1
    # the next process writes it
    again = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    assert again.flush(30) and again.store.count() == 1
    again.close()


def test_a_program_that_exits_without_flushing_has_every_call_stored(tmp_path, fake_provider):
    db = tmp_path / "logs.sqlite3"
    script = textwrap.dedent(f"""
        import lmgate
        from lmgate.loggers.store import StoreLogger
        lmgate.callbacks = [StoreLogger(path={str(db)!r}, spool="off", writer="process", flush_interval=60)]
        for i in range(4):
            lmgate.completion(model="openai/gpt-4o-mini", api_base={fake_provider.base_url + "/v1"!r},
                              api_key={KEY!r}, messages=[{{"role": "user", "content": "bye"}}])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from lmgate.store import open_store

    assert open_store(str(db)).count() == 4


def test_the_environment_picks_the_writer_and_a_bad_one_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("LMGATE_STORE_WRITER", "process")
    logger = StoreLogger(path=str(tmp_path / "a.sqlite3"), spool="off")
    assert logger.writer == "process"
    logger.close()
    with pytest.raises(LoggerConfigError, match=r"callback_settings\.store\.writer.*thread, process, auto"):
        StoreLogger(path=str(tmp_path / "b.sqlite3"), spool="off", writer="fork")


def test_auto_writes_in_a_child_when_a_second_cpu_is_there_and_in_the_thread_on_one():
    """``writer: auto`` (lmgate serve's default): the child process when this process may run on
    two CPUs or more, the delivery thread when it may run on one (its affinity, as taskset or a
    container's cpuset limit it): checked in a process whose affinity is set to one CPU."""
    from lmgate.loggers.store import writer_for

    assert writer_for("auto", 1) == "thread" and writer_for("auto", 2) == "process"
    assert writer_for("thread", 8) == "thread" and writer_for("process", 1) == "process"
    program = textwrap.dedent(
        """
        import os, sys, tempfile
        from lmgate.loggers.store import StoreLogger
        cpus = [int(c) for c in sys.argv[1:]]
        os.sched_setaffinity(0, cpus)
        with tempfile.TemporaryDirectory() as tmp:
            logger = StoreLogger(path=os.path.join(tmp, "s.sqlite3"), spool="off", writer="auto")
            print(logger.writer)
            logger.close()
        """
    )
    available = sorted(os.sched_getaffinity(0))

    def chosen(cpus: list[int]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", program, *map(str, cpus)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert chosen(available[:1]) == "thread"
    if len(available) >= 2:
        assert chosen(available[:2]) == "process"


def test_lmgate_serve_config_takes_auto_and_names_the_choices(tmp_path):
    from lmgate.exceptions import ConfigError
    from lmgate.proxy.store_config import parse

    assert parse({"store": {"writer": "auto"}}, "c.yaml")["writer"] == "auto"
    with pytest.raises(ConfigError, match="writer must be auto, process or thread"):
        parse({"store": {"writer": "fork"}}, "c.yaml")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task"):
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _mock_server_files(tmp_path: Path, store_settings: str = "") -> tuple[Path, dict[str, str]]:
    """A config with one mock model (plus ``store_settings``) and the environment that keeps the
    server's data, cache and store choice inside ``tmp_path``."""
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent("""
        model_list:
          - model_name: mock
            litellm_params: {model: openai/gpt-4o-mini, mock_response: "stored", api_key: sk-mock}
        """)
        + store_settings
    )
    env = {
        "LMGATE_DATA_DIR": str(tmp_path / "data"),
        "LMGATE_CACHE_DIR": str(tmp_path / "cache"),
        "LMGATE_STORE": "",
        # the child, not serve's auto: a one-CPU machine would rightly pick the thread
        # (auto's choice has its own test above)
        "LMGATE_STORE_WRITER": "process",
    }
    return config, env


def _serve_one_call(tmp_path, store_settings: str = "") -> tuple[list[int], int]:
    """A real ``lmgate serve`` with the default store: one call, stored; the store writer
    processes under the server at that moment, and the rows stored after its SIGTERM."""
    pytest.importorskip("starlette")
    import httpx
    from test_proxy_server import Served

    from lmgate.store import open_store

    config, env = _mock_server_files(tmp_path, store_settings)
    served = Served(config, tmp_path, env)
    try:
        served.wait_ready()
        assert not [p for p in _descendants(served.proc.pid) if "store_process" in _cmdline(p)]  # none idle
        answer = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert answer.status_code == 200
        store = open_store(str(tmp_path / "data" / "logs.sqlite3"))
        for _ in range(600):  # bounded poll: the batch ships within the flush interval (1 s)
            if store.count():
                break
            try:
                served.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert store.count() == 1, served.stderr[-2000:]
        writers = [p for p in _descendants(served.proc.pid) if "lmgate.loggers.store_process" in _cmdline(p)]
    finally:
        code = served.stop()
    assert code == 0, served.stderr[-2000:]
    return writers, store.count()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads the process tree from /proc")
def test_lmgate_serve_writes_the_store_from_a_child_process(tmp_path):
    writers, stored = _serve_one_call(tmp_path)
    assert len(writers) == 1 and stored == 1


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads the process tree from /proc")
def test_lmgate_serve_with_writer_thread_runs_no_child(tmp_path):
    writers, stored = _serve_one_call(tmp_path, "general_settings:\n  store: {writer: thread}\n")
    assert writers == [] and stored == 1


def test_a_bad_writer_setting_names_the_key(tmp_path):
    pytest.importorskip("starlette")
    from test_proxy_server import Served

    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\ngeneral_settings:\n  store: {writer: fork}\n")
    served = Served(config, tmp_path, {"LMGATE_DATA_DIR": str(tmp_path / "data"), "LMGATE_STORE": ""})
    assert served.proc.wait(60) == 2
    served.stop()
    assert "general_settings.store.writer" in served.stderr and "process or thread" in served.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads the process tree from /proc")
def test_the_writer_process_logs_as_the_server_does(tmp_path):
    """``lmgate serve --log-format json`` promises one JSON object a line on stderr (for log
    shippers), every line masked: the writer process shares that stderr, so its own warnings
    (here: a batch it could not write, the store locked by another program) come as JSON too."""
    pytest.importorskip("starlette")
    import sqlite3

    import httpx
    from test_proxy_server import Served

    config, env = _mock_server_files(tmp_path)
    served = Served(config, tmp_path, env, args=["--log-format", "json"])
    locker = None
    try:
        served.wait_ready()
        locker = sqlite3.connect(tmp_path / "data" / "logs.sqlite3", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another program holds the store: the child's write fails
        answer = httpx.post(
            f"{served.url}/v1/chat/completions",
            json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert answer.status_code == 200
        for _ in range(1000):  # bounded poll: the batch ships within 1 s, SQLite gives up after 5 s
            if "writing a batch" in served.stderr:
                break
            try:
                served.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert "writing a batch" in served.stderr
    finally:
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()
        served.stop()
    lines = [line for line in served.stderr.splitlines() if line.strip()]
    not_json = []
    for line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            not_json.append(line)
    assert not not_json, not_json


def test_the_writer_process_masks_its_own_lines():
    """Outside ``lmgate serve`` (no server format to follow) the child's lines are masked too."""
    line = "http://user:hunter2@db.example/x sk-abcdefghijklmnopqrstuvwxyz012345"
    code = (
        "import logging\n"
        "from lmgate.loggers.writer_child import setup_logging\n"
        "setup_logging('lmgate store writer')\n"
        f"logging.getLogger('lmgate.loggers').warning('store: failed: %s', {line!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LMGATE_LOG_CONFIG"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "lmgate store writer: WARNING store: failed:" in done.stderr
    assert "hunter2" not in done.stderr and "sk-abcdefghijklmnopqrstuvwxyz012345" not in done.stderr


class PayloadOnly(Summaries):
    reads_payload_only = True  # as the store: reads the payload only, never the request


def test_calls_heard_only_by_payload_sinks_keep_no_request_and_the_same_payloads(fake_provider):
    """A call whose only listeners read the standard logging payload (the store) keeps no copy
    of the request it sent (``Plan.reads_request``) and no ``litellm_params``, and its payload is the one a call with a
    listener of the request gets, for every shape; with any other listener the request is kept."""

    def summaries(sink) -> list:
        lmgate.callbacks = [sink]
        try:
            several_calls(fake_provider)
            lmgate.completion(
                model="openai/gpt-4o-mini", mock_response="hi", messages=[{"role": "user", "content": "y"}]
            )
        finally:
            lmgate.callbacks = []
        return sink.got

    only, kept = summaries(PayloadOnly()), summaries(Summaries())
    assert len(only) == len(kept) == 10
    assert all(s.body_snapshot == (None, None) and not s.request_headers for s in only)
    assert all(s.original_response is None for s in only)
    assert all(s.body_snapshot != (None, None) for s in kept)
    assert all(s.request_headers for s in kept[:-1])  # the mock's request has no headers
    # nor a factory of the call's litellm_params (the payload does not read them); the others do
    assert all(s.litellm_params_source == {} for s in only)
    assert all(s.litellm_params["litellm_call_id"] == s.call_id for s in kept)

    def steady(summary) -> dict:
        payload = orjson.loads(summary.payload_json())
        for key in (
            "id",
            "trace_id",
            "litellm_call_id",
            "startTime",
            "endTime",
            "completionStartTime",
            "response_time",
        ):
            payload.pop(key)
        payload["hidden_params"].pop("litellm_call_id", None)
        (payload["hidden_params"].get("additional_headers") or {}).pop("llm_provider-x-request-id", None)
        if isinstance(payload.get("response"), dict):
            payload["response"].pop("id", None)
            payload["response"].pop("created", None)
        return payload

    for a, b in zip(only, kept, strict=True):
        assert steady(a) == steady(b)


class RecordAndSummary(Summaries):
    """Sees each call twice: its running record at the terminal event (``take_record``, answering
    False so the summary comes too), then its summary."""

    def __init__(self) -> None:
        super().__init__()
        self.from_records: list = []

    def take_record(self, record, event) -> bool:
        self.from_records.append(facts_record_of(record))
        return False


def test_facts_read_from_the_running_record_are_the_summarys_facts(fake_provider):
    """The store takes a call's facts from its running record (``facts_record_of``: no summary
    frozen): the very bytes the summary's facts are, for every call shape, None where they are."""
    sink = RecordAndSummary()
    lmgate.callbacks = [sink]
    try:
        several_calls(fake_provider)
    finally:
        lmgate.callbacks = []
    from_summaries = [facts_record(s) for s in sink.got]
    assert len(sink.from_records) == len(from_summaries) == 9
    assert sink.from_records == from_summaries
    assert sum(r is not None for r in sink.from_records) == 4


class FrozenYet(Summaries):
    """Listed after the store: whether the call's summary was frozen before this sink's turn."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen: list[bool] = []

    def take_record(self, record, event) -> bool:
        self.frozen.append(record._summary is not None)
        return False


def test_the_process_writer_takes_facts_without_freezing_a_summary(tmp_path, fake_provider):
    """With ``writer: process`` a successful call is queued from its record: the store freezes no
    summary for it (the dispatcher asks ``take_record`` first); a failure still goes through its
    summary. Both are stored."""
    from lmgate.store import open_store

    logger = StoreLogger(path=str(tmp_path / "p.sqlite3"), spool="off", writer="process")
    probe = FrozenYet()
    lmgate.callbacks = [logger, probe]
    try:
        lmgate.completion(**params(fake_provider))
        fake_provider.enqueue(Reply(status=400))
        with pytest.raises(lmgate.exceptions.BadRequestError):
            lmgate.completion(**params(fake_provider))
        assert logger.flush(60)
    finally:
        lmgate.callbacks = []
    assert probe.frozen == [False, True]
    assert logger.stats()["delivered"] == 2
    logger.close()
    assert open_store(str(tmp_path / "p.sqlite3")).count() == 2


# The real writer, with every byte the serving process sends it copied to a file first.
TAPPED = textwrap.dedent("""
    import os, sys
    from lmgate.loggers import store_process as w
    tap = open(sys.argv[1], "ab", buffering=0)

    class Tapped:
        def __init__(self, stream):
            self.stream = stream

        def read(self, n):
            data = self.stream.read(n)
            tap.write(data)
            return data

    stdin = Tapped(os.fdopen(0, "rb"))
    raise SystemExit(w.serve(stdin, os.fdopen(1, "wb")))
""")


def test_with_the_write_ahead_spool_the_child_reads_the_records_from_the_spool_file(tmp_path, fake_provider):
    """The serving process writes each record once, to the spool; the child reads the lines from
    the file (``spool_tail.py``): no record crosses the pipe, and the rows are the thread
    writer's, byte for byte."""
    child = StoreLogger(
        path=str(tmp_path / "process.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    child.exporter.command = [sys.executable, "-c", TAPPED, str(tmp_path / "tap")]
    in_process = StoreLogger(path=str(tmp_path / "thread.sqlite3"), spool="off", writer="thread")
    lmgate.callbacks = [child, in_process]
    several_calls(fake_provider)
    assert child.flush(30) and in_process.flush(30)
    stats = child.stats()
    assert stats["delivered"] == 9 and stats["dropped_total"] == 0 and stats["pending"] == 0
    piped = (tmp_path / "tap").read_bytes()
    assert b"hello writer" not in piped and b"lmgate.facts" not in piped  # only the lines' places
    assert str(tmp_path / "spool").encode() in piped
    theirs = sorted(rows_of(child), key=lambda r: r["call_id"])
    assert theirs == sorted(rows_of(in_process), key=lambda r: r["call_id"]) and len(theirs) == 9
    assert all(child.store.get(r["call_id"]) == in_process.store.get(r["call_id"]) for r in theirs)
    # every line written is acknowledged: nothing is left for a next process to write again
    child.close()
    assert not [p for p in (tmp_path / "spool").iterdir() if p.suffix == ".wal"]


def test_records_the_spool_cannot_take_are_kept_in_memory_and_written(tmp_path, fake_provider):
    """A file-size limit on the serving process (not on its writer, started before it): the
    spool's appends fail, the records are kept in memory and handed over the pipe; every call is
    stored once and the failed appends are counted. (The spool's mapped segment reserves its
    blocks when it is made: segments of 2,500 bytes here, so the limit meets the next one, whose
    reservation fails; it is then written with write(), which fails too.)"""
    db = tmp_path / "logs.sqlite3"
    script = textwrap.dedent(f"""
        import resource, signal
        import lmgate
        from lmgate.loggers.store import StoreLogger
        logger = StoreLogger(path={str(db)!r}, spool_dir={str(tmp_path / "spool")!r}, writer="process")
        logger.processor.spool.segment_max_bytes = 2500  # one record a segment
        lmgate.callbacks = [logger]
        def call():
            lmgate.completion(model="openai/gpt-4o-mini", api_base={fake_provider.base_url + "/v1"!r},
                              api_key={KEY!r}, messages=[{{"role": "user", "content": "x" * 500}}])
        call()
        assert logger.flush(30)  # the writer runs now, without the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        for _ in range(6):
            call()
        assert logger.flush(30)
        stats = logger.stats()
        assert stats["delivered"] == 7 and stats["dropped_total"] == 0, stats
        assert stats["spool_write_failed"] >= 3, stats
        print("OK")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr
    from lmgate.store import open_store

    assert open_store(str(db)).count() == 7


def test_lines_of_many_spool_segments_are_each_written_once(tmp_path, fake_provider):
    """Segments fill up and new ones start (a tiny segment size): the runs of lines the child is
    sent span several files; every call is stored once, and the segments are all resolved."""
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    logger.processor.spool.segment_max_bytes = 3000  # a new segment every two or three records
    lmgate.callbacks = [logger]

    def call_id() -> str:
        return lmgate.completion(**params(fake_provider))._hidden_params["litellm_call_id"]

    ids = [call_id() for _ in range(5)]
    assert logger.flush(30)
    ids += [call_id() for _ in range(7)]
    assert logger.flush(30)
    stats = logger.stats()
    assert stats["delivered"] == 12 and stats["pending"] == 0 and stats["batches"] >= 4
    rows = rows_of(logger)
    assert len(rows) == len({r["call_id"] for r in rows}) == 12
    assert sorted(r["call_id"] for r in rows) == sorted(ids)
    logger.close()
    assert not [p for p in (tmp_path / "spool").iterdir() if p.suffix == ".wal"]


def test_a_damaged_spool_line_that_starts_like_a_lines_frame_is_dropped_alone(tmp_path):
    """A dead process's spool segment, adopted: a damaged line that happens to start with "@" (the
    first byte of a frame naming spool lines) is one record the writer drops with its reason; the
    good record beside it is stored (the child once took the batch for a lines frame, died on it,
    and the batch was retried until given up: the good record lost with it)."""
    good = facts_record_of_one_call(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-1-0badf00d.wal").write_bytes(b"@damaged\n" + good + b"\n")
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"),
        spool_dir=str(spool),
        writer="process",
        retry_policy=FAST,
        max_retries=2,
    )
    try:
        assert logger.flush(30)
        stats = logger.stats()
        assert stats["recovered"] == 2 and stats["delivered"] == 1 and stats["retried"] == 0, stats
        assert sum(stats["dropped"].values()) == 1 and len(rows_of(logger)) == 1, stats
    finally:
        logger.close(5)
    assert not any(p.suffix == ".wal" for p in spool.iterdir())  # both lines resolved


def test_the_spool_reader_never_serves_bytes_a_failed_append_left_and_took_back(tmp_path):
    # The serving process truncates a segment back to its last whole line when an append fails
    # part-way (a full disk: loggers/spool.py); the writer child may have read those bytes ahead
    # while reading the lines before them. The next line written at that place must be read
    # as written, not spliced with what was taken back.
    from lmgate.loggers.store_process import SpoolLines

    path = tmp_path / "segment.wal"
    whole = b'{"n":0}\n{"n":1}\n'
    path.write_bytes(whole + b'{"n":2,"torn":"' + b"x" * 40)  # an append cut short
    lines = SpoolLines()
    assert lines.read(str(path), 0, 2) == [b'{"n":0}', b'{"n":1}']
    with open(path, "r+b") as f:  # taken back, then the next record written in its place
        f.truncate(len(whole))
        f.seek(len(whole))
        f.write(b'{"n":2}\n')
    assert lines.read(str(path), 2, 1) == [b'{"n":2}']
    lines.close()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_the_spool_reader_gives_each_line_once_in_order_across_reads(tmp_path, chunk):
    """Lines of every length, read in batches of several sizes whose ends fall inside and on the
    file's read chunks; a line not (yet) whole is not given, and is once it is."""
    from lmgate.loggers.store_process import SpoolLines

    path = tmp_path / "segment.wal"
    records = [b'{"n":%d,"pad":"%s"}' % (i, b"y" * (i * 7 % 23)) for i in range(60)]
    path.write_bytes(b"".join(r + b"\n" for r in records) + b'{"n":60')  # the last one being written
    lines = SpoolLines()
    lines._CHUNK = chunk
    got, at = [], 0
    for size in (1, 3, 10, 0, 17, 29):
        got += lines.read(str(path), at, size)
        at += size
    assert got == records
    with pytest.raises(OSError):
        lines.read(str(path), 60, 1)  # not whole yet
    with open(path, "ab") as f:
        f.write(b"}\n")
    assert lines.read(str(path), 60, 1) == [b'{"n":60}']
    assert lines.read(str(path), 30, 2) == records[30:32]  # asked again from elsewhere: reopened
    lines.close()


def test_the_writer_yields_the_cpu_only_when_the_spool_holds_the_records(tmp_path, fake_provider):
    """Fed spool lines (the write-ahead spool holds every record on disk), the child lowers its CPU
    priority, so a saturated machine serves requests first; fed records over the pipe (they wait
    in the serving process's bounded queue) it keeps its parent's."""
    from lmgate.loggers.store_process import WRITER_NICENESS

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    spooled = StoreLogger(
        path=str(tmp_path / "a.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    piped = StoreLogger(path=str(tmp_path / "b.sqlite3"), spool="off", writer="process")
    lmgate.callbacks = [spooled, piped]
    lmgate.completion(**params(fake_provider))
    assert spooled.flush(30) and piped.flush(30)
    assert spooled.stats()["delivered"] == piped.stats()["delivered"] == 1
    assert os.getpriority(os.PRIO_PROCESS, spooled.exporter.pid) == min(19, mine + WRITER_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, piped.exporter.pid) == mine
    spooled.close()
    piped.close()


def test_a_second_writer_waits_for_the_one_still_reading_a_segment(tmp_path):
    """A serving process killed with SIGKILL can leave its writer child finishing a batch; the
    process that adopts the segment asks its own child for the same lines. That child writes only
    once the first one lets go of the segment (exits or moves on), so the two never insert one
    record at the same time (ClickHouse checks for the ids it inserts: two at once could both
    insert). The first child holds the segment's writing lock while it reads it; a second one
    asked for its lines answers only after the lock is let go."""
    import fcntl
    import select

    from lmgate.loggers.store_process import LINES, WRITING_BYTE
    from lmgate.loggers.writer_child import read_frame, write_frame

    segment = tmp_path / "segment.wal"
    segment.write_bytes(facts_record_of_one_call(tmp_path) + b"\n")
    settings = orjson.dumps({"path": str(tmp_path / "logs.sqlite3"), "type": "sqlite"})
    ask = LINES + orjson.dumps([str(segment), 0, 1])

    def child() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmgate.loggers.store_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        write_frame(proc.stdin, settings)
        return proc

    def lock_is_free() -> bool:
        fd = os.open(segment, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, WRITING_BYTE)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # lets go of a lock it took

    first = child()
    write_frame(first.stdin, ask)
    assert read_frame(first.stdout) == b"D"
    assert not lock_is_free()  # the first child still reads the segment (it may be asked for more)
    first.stdin.close()  # its serving process is gone: it exits, and lets go of the segment
    assert first.wait(30) == 0
    first.stdout.close()
    assert lock_is_free()

    # a second child asked while the segment's lock is held (by this test, as by an orphan)
    held = os.open(segment, os.O_RDWR)
    fcntl.lockf(held, fcntl.LOCK_EX, 1, WRITING_BYTE)
    second = child()
    write_frame(second.stdin, ask)
    # it has not answered while the lock is held (were it not waiting, it would answer at once)
    assert select.select([second.stdout], [], [], 1.0)[0] == []
    os.close(held)  # the orphan is gone
    assert read_frame(second.stdout) == b"D"  # the row is there already: stored once
    second.stdin.close()
    assert second.wait(30) == 0
    second.stdout.close()

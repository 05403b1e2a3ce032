"""Call ids stay unique when the program seeds Python's ``random``: an evaluation script seeds it
before each sample (reproducible sampling) or once at its start, in every run and every shard.
The log store keeps one row per call id (``ON CONFLICT DO NOTHING``), so an id drawn again is a
record lost."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

import lmgate
from lmgate.loggers.store import StoreLogger
from lmgate.store import Filters, Page

pytest.importorskip("sqlalchemy")


def test_calls_of_a_program_that_seeds_random_before_each_are_each_stored(
    tmp_path: Path, fake_provider
) -> None:
    logger = StoreLogger(path=str(tmp_path / "logs.sqlite3"), spool="off", flush_interval=60)
    state = random.getstate()
    lmgate.callbacks = [logger]
    try:
        for _ in range(3):
            random.seed(1234)  # the script's own sampling, reproducible per sample
            lmgate.completion(
                model="openai/gpt-4o-mini",
                api_base=fake_provider.base_url + "/v1",
                api_key="sk-test-seeded",
                messages=[{"role": "user", "content": "hello"}],
            )
        assert logger.flush(10)
        rows = logger.store.query(Filters(), Page(limit=100))
    finally:
        lmgate.callbacks = []
        random.setstate(state)
        logger.close()
    assert len(rows) == 3


PROGRAM = (
    "import random; random.seed(7)\n"  # seeded at the start, before lmgate is imported
    "from lmgate._call import new_call_id\n"
    "print(new_call_id())\n"
)


def test_two_runs_of_a_program_seeded_at_its_start_make_different_ids() -> None:
    """Two shards (or two runs) of one script write to one log store: their ids must differ."""
    ids = [
        subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert ids[0] and ids[1] and ids[0] != ids[1]


def test_a_response_continued_after_the_program_reseeded_random_is_its_own() -> None:
    """Response ids key the response store (``previous_response_id``): a program that seeds
    ``random`` before each request must not get a second response under the first one's id,
    which would continue another conversation."""
    from lmgate.testing import CapturingLogger

    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    state = random.getstate()
    try:
        random.seed(99)
        first = lmgate.responses(model="gpt-4o-mini", input="Question A", mock_response="Answer A")
        random.seed(99)
        second = lmgate.responses(model="gpt-4o-mini", input="Question B", mock_response="Answer B")
        lmgate.responses(
            model="gpt-4o-mini", input="More", previous_response_id=first["id"], mock_response="ok"
        )
        lmgate.flush_callbacks(10)
        (*_, last) = capture.of("log_success_event")
    finally:
        random.setstate(state)
        lmgate.reset_settings()
    assert first["id"] != second["id"]
    sent = str(last.kwargs["messages"])
    assert "Question A" in sent and "Question B" not in sent

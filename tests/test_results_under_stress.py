"""Results under stress: a failure of one part of what the agent did (its answer's events past the size limit, a
dropped connection) leaves only that part empty, with a line saying why, on both clients and through the handle; a
request that failed on the way is sent again by itself without repeating the parts already read. And a diff is
bounded in time whatever the files (a 30,000-line file with every 7th line removed: well under 2 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import NO_RETRIES, RetryPolicy
from openhands_magics.models import Conversation, FileDiff
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

DONE = Timeline(
    starting=0.05, running=0.1, answer="All fixed.", changes=(("UPDATED", "demo/a.py"), ("ADDED", "demo/b.py"))
)
EVENTS = "/api/v1/conversation/"
GIT = "/api/v1/app-conversations/"
QUICK_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
ANSWER_FAULTS = [
    pytest.param({"drop": True, "times": 10}, "answer: The connection", id="dropped"),
    pytest.param(
        {"status": 200, "body": b"x" * 65536, "endless": True, "times": 10},
        "answer: The server's answer was larger",
        id="endless",
    ),
    pytest.param(
        {"status": 200, "body": b'{"items": [' + b" " * 300_000 + b"]}", "times": 10},
        "answer: The server's answer was larger",
        id="past-the-size-limit",
    ),
]


@pytest.fixture
def done() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, timeline=DONE) as server:
        yield server


def _finished(server: LocalOpenHandsServer) -> Conversation:
    with OpenHandsClient(SECRET, base_url=server.base_url, api="v1") as client:
        task = client.start_conversation("fix it")
        wait_until(lambda: server.conversation_ids())
        return wait_until(lambda: (c := client.refresh(task)).is_final and c)


def _client(server: LocalOpenHandsServer, retry: RetryPolicy = QUICK_RETRY, **options: Any) -> OpenHandsClient:
    return OpenHandsClient(SECRET, base_url=server.base_url, api="v1", retry=retry, max_answer_bytes=100_000, **options)


@pytest.mark.parametrize(("fault", "problem"), ANSWER_FAULTS)
def test_a_failed_answer_read_keeps_the_changed_files(
    done: LocalOpenHandsServer, fault: dict[str, Any], problem: str
) -> None:
    conversation = _finished(done)
    done.inject(method="GET", path_prefix=EVENTS, **fault)
    with _client(done) as client:
        outcome = client.outcome(conversation)
    assert outcome.answer is None
    assert outcome.changes is not None and [c.path for c in outcome.changes] == ["demo/a.py", "demo/b.py"]
    assert len(outcome.problems) == 1 and outcome.problems[0].startswith(problem), outcome.problems


def test_a_failed_changes_read_keeps_the_answer(done: LocalOpenHandsServer) -> None:
    conversation = _finished(done)
    done.inject(method="GET", path_prefix=GIT, drop=True, times=10)
    with _client(done) as client:
        outcome = client.outcome(conversation)
    assert outcome.answer == "All fixed." and outcome.changes is None
    assert len(outcome.problems) == 1 and outcome.problems[0].startswith("changes: The connection")


@pytest.mark.parametrize(("fault", "problem"), ANSWER_FAULTS)
def test_the_pollers_client_keeps_the_changed_files_too(
    done: LocalOpenHandsServer, fault: dict[str, Any], problem: str
) -> None:
    conversation = _finished(done)

    async def scenario() -> Any:
        async with AsyncOpenHandsClient(
            SECRET, base_url=done.base_url, api="v1", retry=NO_RETRIES, max_answer_bytes=100_000
        ) as client:
            done.inject(method="GET", path_prefix=EVENTS, **fault)
            return await client.outcome(conversation)

    outcome = asyncio.run(scenario())
    assert outcome.answer is None and outcome.changes is not None and len(outcome.changes) == 2
    assert outcome.problems[0].startswith(problem), outcome.problems


def test_a_waited_handle_keeps_its_changes_when_its_answer_cannot_be_read(done: LocalOpenHandsServer) -> None:
    session = Session()
    handle = session.start("fix it", endpoint=Endpoint.resolve(done.base_url, api_key=SECRET))
    wait_until(lambda: done.conversation_ids())
    done.inject(method="GET", path_prefix=EVENTS, drop=True, times=10)
    handle.wait(timeout=10)
    assert handle.outcome is not None and [c.path for c in handle.changes()] == ["demo/a.py", "demo/b.py"]
    assert handle.answer is None and handle.outcome.problems[0].startswith("answer:")
    session.close()


def test_a_request_dropped_once_is_sent_again_alone_and_the_outcome_is_whole(done: LocalOpenHandsServer) -> None:
    conversation = _finished(done)
    before = len(done.requests)
    done.inject(method="GET", path_prefix=GIT, drop=True, times=1)
    with _client(done) as client:
        outcome = client.outcome(conversation)
    assert outcome.answer == "All fixed." and outcome.changes is not None and outcome.problems == ()
    paths = [r.path for r in done.requests[before:]]
    assert sum(p.startswith(EVENTS) for p in paths) == 1  # the answer, read once: not again for the changes' retry
    assert sum(p.endswith("/git/changes") for p in paths) == 2


def test_retries_of_single_requests_share_the_operations_budget_and_deadline(done: LocalOpenHandsServer) -> None:
    conversation = _finished(done)
    done.inject(method="GET", drop=True, times=100)
    with _client(done, retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02)) as client:
        started = time.monotonic()
        outcome = client.outcome(conversation)
        assert time.monotonic() - started < 2
    assert len(outcome.problems) == 2  # each part failed after its own retries, within one deadline


# ---------------------------------------------------------------------------------------------------- the diff
def _numbered(n: int, every: int | None = None) -> str:
    return "".join(f"line {i}\n" for i in range(n) if every is None or i % every)


def test_the_diff_of_a_30000_line_file_with_every_7th_line_removed_takes_well_under_2_s() -> None:
    before, after = _numbered(30_000), _numbered(30_000, every=7)
    started = time.monotonic()
    text = FileDiff("big.py", before, after).unified()
    took = time.monotonic() - started
    assert took < 2.0, f"{took:.1f} s"
    removed = [line for line in text.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert len(removed) == len(range(0, 30_000, 7)) and "-line 0" in removed and "-line 29995" in removed
    assert not any(line.startswith("+") and not line.startswith("+++") for line in text.splitlines())


@pytest.mark.parametrize("case", ["all-different", "repeated-lines", "shuffled", "interleaved-duplicates"])
def test_a_diff_is_bounded_in_time_whatever_the_input(case: str) -> None:
    import random

    rng = random.Random(7)
    n = 20_000
    lines = {
        "all-different": ([f"a{i}\n" for i in range(n)], [f"b{i}\n" for i in range(n)]),
        "repeated-lines": (["x\n", "y\n"] * (n // 2), ["y\n", "x\n", "x\n"] * (n // 3)),
        "shuffled": ([f"l{i}\n" for i in range(n)], rng.sample([f"l{i}\n" for i in range(n)], n)),
        "interleaved-duplicates": ([f"{i % 50}\n" for i in range(n)], [f"{(i * 7) % 50}\n" for i in range(n)]),
    }[case]
    started = time.monotonic()
    text = FileDiff("f", "".join(lines[0]), "".join(lines[1])).unified()
    assert time.monotonic() - started < 2.5
    assert _apply(text, lines[0]) == lines[1]  # whatever it found, the diff is right


def test_a_diff_too_costly_to_refine_says_so_and_is_still_right() -> None:
    before = [f"{i % 3}\n" for i in range(30_000)]
    after = [f"{(i + 1) % 3}\n" for i in range(29_000)]
    text = FileDiff("f", "".join(before), "".join(after)).unified()
    assert _apply(text, before) == after


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("a\nb\nc\n", "a\nB\nc\n"),
        ("", "new\n"),
        ("old\n", ""),
        ("a\nb", "a\nb\n"),
        ("a\nb\n", "a\nb"),
        ("same\n", "same\n"),
        ("\n".join(map(str, range(100))) + "\n", "\n".join(map(str, range(1, 101))) + "\n"),
    ],
)
def test_small_diffs_are_what_difflib_gives(before: str, after: str) -> None:
    import difflib

    expected = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
        for line in difflib.unified_diff(before.splitlines(True), after.splitlines(True), "a/f", "b/f")
    )
    assert FileDiff("f", before, after).unified() == expected


def test_a_diff_of_a_new_or_deleted_file_names_dev_null() -> None:
    assert FileDiff("f", None, "a\n").unified().startswith("--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+a\n")
    assert FileDiff("f", "a\n", None).unified().startswith("--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n")


def _apply(diff: str, before: list[str]) -> list[str]:
    """The file a unified diff turns ``before`` into (to check a diff, whatever hunks it chose)."""
    import re

    out, at = [], 0
    lines = diff.splitlines(keepends=True)[2:]
    for line in lines:
        hunk = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", line)
        if hunk:
            start = int(hunk.group(1)) - (0 if hunk.group(2) == "0" else 1)
            out += before[at:start]
            at = start
        elif line.startswith(" "):
            assert before[at] == line[1:]
            out.append(line[1:])
            at += 1
        elif line.startswith("-"):
            assert before[at] == line[1:]
            at += 1
        elif line.startswith("+"):
            out.append(line[1:])
    return out + before[at:]

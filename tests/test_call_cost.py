"""The call's own cost, kept off the caller's path without weakening what it promises: a start is in this process's
record at once and in the record on disk before anything reads it (and on close, and at exit); the writer thread
leaves nothing behind; the endpoint, the store and the secrets are not worked out again while nothing changed; a
handle is found by its ids, not by looking through every handle."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from IPython.core.interactiveshell import InteractiveShell

from openhands_magics import _environ, _secrets, config, store
from openhands_magics import session as session_module
from openhands_magics.models import Conversation
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import Output

URL = "https://app.example.test"


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "openhands-store"]


def test_a_line_queued_for_the_disk_is_read_back_at_once_by_the_next_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "WRITER_GATHER", 30.0)  # the writer would wait long: the reader must not
    conversations = store.ConversationStore(tmp_path / "conversations.jsonl")
    ident = uuid.uuid4().hex
    conversations.add_soon(base_url=URL, task_id=ident, notebook="n.ipynb")
    assert [e.task_id for e in conversations.entries()] == [ident]
    assert conversations.entries()[0].notebook == str(Path("n.ipynb").resolve())  # against the cwd of the call


def test_lines_queued_together_are_written_in_order_in_one_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversations = store.ConversationStore(tmp_path / "conversations.jsonl")
    appends: list[int] = []
    real = conversations._append
    monkeypatch.setattr(conversations, "_append", lambda records: (appends.append(len(records)), real(records)))
    monkeypatch.setattr(store, "WRITER_GATHER", 30.0)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    conversations.add_soon(base_url=URL, task_id=first)
    conversations.add_soon(base_url=URL, task_id=first, conversation_id=second)
    conversations.add_soon(base_url=URL, task_id="not an id")  # refused alone; the others are written
    conversations.forget_soon(URL, second)
    assert conversations.flush()
    assert appends == [3]
    assert conversations.entries() == []  # added, named, then forgotten: in that order


def test_close_writes_what_was_queued_and_leaves_no_writer_thread(
    server: LocalOpenHandsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "WRITER_GATHER", 30.0)
    monkeypatch.setattr(store, "WRITER_LINGER", 30.0)
    session = Session()
    handle = session.start(
        "recorded off the caller's path", endpoint=Endpoint.resolve(server.base_url, api_key=server.api_key)
    )
    assert session.history() == [handle]  # in this process's record at once
    assert writer_threads()
    session.close()
    assert writer_threads() == []
    path = store.get_store().path
    assert handle.task_id in path.read_text()  # written, though the writer would still be gathering


def test_a_script_that_exits_right_after_a_start_has_it_on_disk(server: LocalOpenHandsServer, tmp_path: Path) -> None:
    script = (
        "from openhands_magics import store\n"
        "store.WRITER_GATHER = 30.0\n"
        "from openhands_magics.session import Endpoint, Session\n"
        f"h = Session().start('exits at once', endpoint=Endpoint.resolve({server.base_url!r}))\n"
        "print(h.task_id, flush=True)\n"
    )
    env = {**os.environ, **server.environ(), store.DATA_DIR_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() in (tmp_path / store.FILE_NAME).read_text()


def test_the_writer_thread_ends_by_itself_when_it_has_nothing_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import wait_until

    monkeypatch.setattr(store, "WRITER_LINGER", 0.05)
    conversations = store.ConversationStore(tmp_path / "conversations.jsonl")
    conversations.add_soon(base_url=URL, task_id=uuid.uuid4().hex)
    conversations.flush()
    wait_until(lambda: not writer_threads())
    conversations.add_soon(base_url=URL, task_id=uuid.uuid4().hex)  # and starts again with the next line
    assert len(conversations.entries()) == 2


def test_the_environment_stamp_stays_while_nothing_changes_and_moves_with_every_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = _environ.stamp()
    assert _environ.stamp() == first
    monkeypatch.setenv("OPENHANDS_MAGICS_TEST_VALUE", "one")
    second = _environ.stamp()
    assert second != first and _environ.stamp() == second
    os.environ["OPENHANDS_MAGICS_TEST_VALUE"] = "two"  # (as %env does)
    assert _environ.stamp() != second
    third = _environ.stamp()
    monkeypatch.delenv("OPENHANDS_MAGICS_TEST_VALUE")
    assert _environ.stamp() != third


def test_the_resolved_endpoint_follows_every_change_of_what_it_is_made_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.API_KEY_ENV, "key-one-0123456789")
    first = Endpoint.resolve("http://127.0.0.1:9")
    assert Endpoint.resolve("http://127.0.0.1:9") is first  # nothing changed: not made again
    monkeypatch.setenv(config.API_KEY_ENV, "key-two-0123456789")
    assert Endpoint.resolve("http://127.0.0.1:9").api_key.reveal() == "key-two-0123456789"
    config.set_session_api_key("key-login-0123456789")
    assert Endpoint.resolve("http://127.0.0.1:9").api_key.reveal() == "key-login-0123456789"
    config.clear_session_api_key()
    monkeypatch.setenv(config.API_ENV, "v0")
    assert Endpoint.resolve("http://127.0.0.1:9").api == "v0"
    monkeypatch.setenv(config.BASE_URL_ENV, "http://127.0.0.1:10")
    assert Endpoint.resolve().base_url == "http://127.0.0.1:10"
    with pytest.raises(Exception, match="timeout"):
        Endpoint.resolve("http://127.0.0.1:9", timeout=True)  # (True == 1: the type counts too)
    assert "key-" not in repr(vars(sys.modules["openhands_magics.endpoint"])["_resolved"])  # no secret kept by


def test_a_secret_set_a_moment_ago_is_blanked_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _secrets.blank("token sk-new-value-123456") == "token sk-new-value-123456"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "sk-new-value-123456")
    assert _secrets.blank("token sk-new-value-123456") == f"token {_secrets.BLANK}"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "sk-other-value-654321")
    assert _secrets.blank("sk-new-value-123456 sk-other-value-654321") == f"sk-new-value-123456 {_secrets.BLANK}"
    assert _secrets.blank("x", {"db_password": "hunter2-hunter2"}) == "x"
    assert _secrets.blank("hunter2-hunter2", {"db_password": "hunter2-hunter2"}) == _secrets.BLANK


def test_a_handle_known_by_its_start_task_is_found_by_the_id_it_learned_since() -> None:
    session = Session()
    endpoint = Endpoint.resolve("http://127.0.0.1:9", api_key="k" * 20)
    task, ident = uuid.uuid4().hex, uuid.uuid4().hex
    handle = session.record(Conversation(None, start_task_id=task, api="v1"), endpoint)
    others = [session.record(Conversation(None, start_task_id=uuid.uuid4().hex, api="v1"), endpoint) for _ in range(50)]
    handle.update(Conversation(ident, start_task_id=task, api="v1"))  # named by the tracker, not re-indexed
    assert session.record(Conversation(ident, api="v1"), endpoint) is handle
    assert handle not in session._unnamed and all(o in session._unnamed for o in others)


def test_the_record_of_a_notebook_is_read_through_the_session_with_what_was_just_started(
    server: LocalOpenHandsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "WRITER_GATHER", 30.0)
    session = Session()
    session.notebook = str(tmp_path / "analysis.ipynb")
    endpoint = Endpoint.resolve(server.base_url, api_key=server.api_key)
    handle = session.start("recorded for this notebook", endpoint=endpoint)
    assert [e.task_id for e in session.recorded(endpoint, session.notebook)] == [handle.task_id]
    assert session.recorded(endpoint, str(tmp_path / "other.ipynb")) == []
    assert session.recorded(endpoint, None) == []  # the notebook unknown: nothing is its
    session.remember = False
    assert session.recorded(endpoint, session.notebook) == []
    session.close()


def test_a_start_from_the_magic_is_keyed_once_on_its_way_and_a_second_run_of_its_cell_still_finds_it(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed: list[tuple[Any, ...]] = []
    real_key = session_module.once_id
    monkeypatch.setattr(session_module, "once_id", lambda *a: keyed.append(a) or real_key(*a))

    first = ip.run_line_magic("openhands", "--branch main Clean up the CSV loader")

    assert len(keyed) == 1 and first.task_id  # (the same-task look-up and the start share the key)
    again = ip.run_line_magic("openhands", "--branch main Clean up the CSV loader")  # the same task, still running
    assert again is first and len(server_env.task_ids()) == 1
    assert "this same task is still running" in output.read()[0]

"""The on-disk record of conversations, on real files in temporary directories: merging a start task with its
conversation, tombstones, filters, modes, refusing anything secret-like, surviving corrupt and hostile files, failing
quietly, concurrent kernels and compaction."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from openhands_magics import store
from openhands_magics.store import ConversationStore, StoredConversation, default_path, get_store, reset_store

from .conftest import SECRET

URL = "https://app.example.test"
OTHER_URL = "http://127.0.0.1:3000"
KNOWN_KEYS = {"v", "base_url", "conversation_id", "task_id", "api", "notebook", "repository", "at"}


def new_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def conversations(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "data" / "conversations.jsonl")


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


# ---------------------------------------------------------------------------------------------------------- merging
def test_a_start_task_and_its_conversation_id_are_one_entry(conversations: ConversationStore) -> None:
    task, conversation = new_id(), new_id()
    conversations.add(base_url=URL, task_id=task, api="v1", notebook="/work/a.ipynb", repository="octo/demo")
    conversations.add(base_url=URL, task_id=task, conversation_id=conversation, api="v1")

    [entry] = conversations.entries()
    assert entry == StoredConversation(URL, conversation, task, "v1", "/work/a.ipynb", "octo/demo", entry.recorded_at)
    assert entry.reference == conversation
    first, second = lines_of(conversations.path)
    assert entry.recorded_at == datetime.fromisoformat(first["at"]) != datetime.fromisoformat(second["at"])
    assert entry.recorded_at.tzinfo is not None and entry.recorded_at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - entry.recorded_at).total_seconds()) < 60


def test_lines_chained_by_either_id_merge_and_later_values_win(conversations: ConversationStore) -> None:
    task, conversation = new_id(), new_id()
    conversations.add(base_url=URL, task_id=task, repository="octo/first")
    conversations.add(base_url=URL, conversation_id=conversation, api="v1", notebook="/n.ipynb")  # not linked yet
    assert len(conversations.entries()) == 2
    conversations.add(base_url=URL, task_id=task, conversation_id=conversation, repository="octo/second")
    conversations.add(base_url=URL, conversation_id=conversation)  # nothing new: nothing overwritten with None

    [entry] = conversations.entries()
    assert (entry.conversation_id, entry.task_id, entry.api, entry.notebook, entry.repository) == (
        conversation,
        task,
        "v1",
        "/n.ipynb",
        "octo/second",
    )
    assert entry.recorded_at == datetime.fromisoformat(lines_of(conversations.path)[0]["at"])


def test_only_a_start_task_is_known(conversations: ConversationStore) -> None:
    task = new_id()
    conversations.add(base_url=URL, task_id=task, api="v1")
    [entry] = conversations.entries()
    assert (entry.conversation_id, entry.task_id, entry.reference) == (None, task, task)


def test_the_same_ids_on_another_server_are_another_conversation(conversations: ConversationStore) -> None:
    conversation = new_id()
    conversations.add(base_url=URL, conversation_id=conversation, repository="octo/a")
    conversations.add(base_url=OTHER_URL, conversation_id=conversation, repository="octo/b")
    assert [(e.base_url, e.repository) for e in conversations.entries()] == [(URL, "octo/a"), (OTHER_URL, "octo/b")]


def test_entries_are_oldest_first_by_first_record(conversations: ConversationStore) -> None:
    ids = [new_id() for _ in range(5)]
    for conversation in ids:
        conversations.add(base_url=URL, conversation_id=conversation)
    conversations.add(base_url=URL, conversation_id=ids[0], repository="octo/again")  # recorded again: keeps its place
    assert [e.conversation_id for e in conversations.entries()] == ids


def test_a_missing_file_has_no_entries(conversations: ConversationStore) -> None:
    assert conversations.entries() == []
    assert not conversations.path.parent.exists()  # reading creates nothing


# ------------------------------------------------------------------------------------------------------- forgetting
def test_forget_by_either_id_on_that_server_only(conversations: ConversationStore) -> None:
    first_task, first, second, third = new_id(), new_id(), new_id(), new_id()
    conversations.add(base_url=URL, task_id=first_task)
    conversations.add(base_url=URL, task_id=first_task, conversation_id=first)
    conversations.add(base_url=URL, conversation_id=second)
    conversations.add(base_url=URL, conversation_id=third)
    conversations.add(base_url=OTHER_URL, conversation_id=second)

    conversations.forget(URL, first_task)  # the start task's id hides the conversation it became
    conversations.forget(URL, second)
    assert [(e.base_url, e.conversation_id) for e in conversations.entries()] == [(URL, third), (OTHER_URL, second)]
    assert lines_of(conversations.path)[-1].keys() == {"v", "base_url", "forget", "at"}

    conversations.forget(URL, "")  # what Session.reattach passes when a probe has neither id
    conversations.forget(URL, "not an id")
    conversations.forget("ftp://nowhere", third)
    assert len(conversations.entries()) == 2


# ---------------------------------------------------------------------------------------------------------- filters
def test_filter_by_notebook_compares_resolved_paths(
    conversations: ConversationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "projects" / "analysis"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    mine, theirs, nowhere = new_id(), new_id(), new_id()
    conversations.add(base_url=URL, conversation_id=mine, notebook="projects/../link/./explore.ipynb")
    conversations.add(base_url=URL, conversation_id=theirs, notebook=real / "other.ipynb")
    conversations.add(base_url=URL, conversation_id=nowhere)

    assert [e.notebook for e in conversations.entries()] == [
        str(real / "explore.ipynb"),
        str(real / "other.ipynb"),
        None,
    ]
    for spelling in (
        real / "explore.ipynb",
        str(tmp_path / "link" / "explore.ipynb"),
        "projects/analysis/explore.ipynb",
    ):
        assert [e.conversation_id for e in conversations.entries(notebook=spelling)] == [mine]
    assert conversations.entries(notebook=tmp_path / "elsewhere.ipynb") == []


def test_filter_by_notebook_resolves_what_was_stored_too(conversations: ConversationStore, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    conversations.path.parent.mkdir()
    line = {
        "v": 1,
        "base_url": URL,
        "conversation_id": new_id(),
        "notebook": str(tmp_path / "alias" / "n.ipynb"),
        "at": "2025-01-01T00:00:00+00:00",
    }  # written by hand, unresolved
    conversations.path.write_text(json.dumps(line) + "\n")
    assert len(conversations.entries(notebook=tmp_path / "real" / "n.ipynb")) == 1


def test_filter_by_base_url_is_exact(conversations: ConversationStore) -> None:
    here, there = new_id(), new_id()
    conversations.add(base_url=URL, conversation_id=here)
    conversations.add(base_url=OTHER_URL, conversation_id=there)
    assert [e.conversation_id for e in conversations.entries(base_url=URL)] == [here]
    assert [e.conversation_id for e in conversations.entries(base_url=OTHER_URL)] == [there]
    assert conversations.entries(base_url=URL + "/") == []
    assert conversations.entries(base_url=URL, notebook="/no/such.ipynb") == []


# ----------------------------------------------------------------------------------------------------------- safety
def test_file_and_directory_modes_whatever_the_umask(conversations: ConversationStore) -> None:
    old = os.umask(0)
    try:
        conversations.add(base_url=URL, conversation_id=new_id())
    finally:
        os.umask(old)
    assert stat.S_IMODE(conversations.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(conversations.path.stat().st_mode) == 0o600
    lock = conversations.path.with_name(conversations.path.name + ".lock")
    if lock.exists():  # where fcntl exists
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "values",
    [
        {"base_url": f"https://user:{SECRET}@app.example.test"},
        {"base_url": f"https://{SECRET}@app.example.test"},
        {"base_url": f"https://app.example.test/?api_key={SECRET}"},
        {"base_url": f"https://app.example.test/#{SECRET}"},
        {"base_url": f"ftp://app.example.test/{SECRET}"},
        {"base_url": f"https://app.example.test/{SECRET}\nX"},
        {"conversation_id": SECRET},
        {"task_id": SECRET},
        {"conversation_id": new_id().upper()},
        {"api": SECRET},
        {"repository": f"octo/demo\n{SECRET}"},
        {"notebook": f"/work/{SECRET}\x1b[2J.ipynb"},
        {"repository": "o/" + SECRET * 20},
        {"notebook": "/" + "n" * 4096},
        {"notebook": 42},
        {"api": b"v1"},
    ],
)
def test_values_that_could_carry_a_secret_are_not_recorded(conversations: ConversationStore, values: dict) -> None:
    record = {"base_url": URL, "conversation_id": new_id(), **values}
    conversations.add(**record)
    assert not conversations.path.exists()
    assert conversations.entries() == []


def test_only_known_fields_are_ever_written(conversations: ConversationStore) -> None:
    conversations.add(
        base_url=URL, task_id=new_id(), conversation_id=new_id(), api="v1", notebook="/n.ipynb", repository="octo/demo"
    )
    conversations.add(base_url=f"https://{SECRET}:x@example.test", conversation_id=new_id())
    conversations.forget(URL, new_id())
    text = conversations.path.read_text(encoding="ascii")
    assert SECRET not in text
    adds, forget = lines_of(conversations.path)
    assert adds.keys() == KNOWN_KEYS and forget.keys() == {"v", "base_url", "forget", "at"}


def test_nothing_is_recorded_without_an_id(conversations: ConversationStore) -> None:
    conversations.add(base_url=URL, api="v1", notebook="/n.ipynb")
    conversations.add(base_url=URL, conversation_id="", task_id=None)
    assert not conversations.path.exists()


# ------------------------------------------------------------------------------------------------------- robustness
def test_corrupt_lines_are_skipped(conversations: ConversationStore) -> None:
    good = [new_id() for _ in range(3)]
    at = "2025-01-01T00:00:00+00:00"

    def line(**fields: object) -> str:
        return json.dumps({"v": 1, "base_url": URL, "conversation_id": new_id(), "at": at, **fields})

    conversations.path.parent.mkdir()
    conversations.path.write_bytes(
        "\n".join(
            [
                line(conversation_id=good[0]),
                "not json at all",
                "[1, 2, 3]",
                '"a string"',
                line(conversation_id=12345),
                line(conversation_id=new_id().upper()),
                line(api_key=SECRET),  # a key it does not know
                line(v=2),
                line(v=True),
                line(at="yesterday"),
                line(at="2025-01-01T00:00:00"),  # no zone
                line(base_url=f"https://u:{SECRET}@example.test"),
                line(notebook="/a\nb.ipynb"),
                line(repository=["octo", "demo"]),
                line(conversation_id=None),  # neither id
                line(conversation_id=good[1], forget=good[0]),  # both an add and a tombstone
                json.dumps({"v": 1, "base_url": URL, "forget": "bad", "at": at}),
                "[" * 50_000,
                line(conversation_id=good[1]),
                "",
                "   ",
            ]
        ).encode()
        + b"\n\xff\xfe not utf-8\n"
        + b"\x00" * 100
        + b"\n"
        + line(conversation_id=good[2]).encode()
        + b"\n"
    )

    assert [e.conversation_id for e in conversations.entries()] == good
    conversations.add(base_url=URL, conversation_id=new_id())  # and the store still writes after them
    assert len(conversations.entries()) == 4


def test_a_torn_last_line_does_not_swallow_the_next(conversations: ConversationStore) -> None:
    first, second = new_id(), new_id()
    conversations.add(base_url=URL, conversation_id=first)
    with open(conversations.path, "ab") as file:
        file.write(b'{"v":1,"base_url":"https://app.exa')  # a write cut short by a full disk or a crash
    conversations.add(base_url=URL, conversation_id=second)
    assert [e.conversation_id for e in conversations.entries()] == [first, second]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root (or Windows) ignores these modes")
def test_an_unwritable_directory_never_raises(conversations: ConversationStore) -> None:
    conversations.add(base_url=URL, conversation_id=new_id())
    conversations.path.unlink()
    conversations.path.parent.chmod(0o500)
    try:
        conversations.add(base_url=URL, conversation_id=new_id())
        conversations.forget(URL, new_id())
        assert conversations.entries() == []
    finally:
        conversations.path.parent.chmod(0o700)


def test_a_directory_that_cannot_be_made_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("")
    blocked = ConversationStore(tmp_path / "a-file" / "data" / "conversations.jsonl")
    with caplog.at_level(logging.DEBUG, logger="openhands_magics"):
        for _ in range(3):
            blocked.add(base_url=URL, conversation_id=new_id())
        blocked.forget(URL, new_id())
        assert blocked.entries() == []
    failures = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING] + [logging.DEBUG] * 3
    assert all(r.name == "openhands_magics" for r in failures)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_device_behind_a_link_is_neither_written_nor_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "conversations.jsonl").symlink_to("/dev/full")  # a write fails with ENOSPC, a read is endless zeros
    full = ConversationStore(tmp_path / "conversations.jsonl")
    with caplog.at_level(logging.WARNING, logger="openhands_magics"):
        full.add(base_url=URL, conversation_id=new_id())
    assert "symbolic link" in caplog.text
    assert full.entries() == []


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW")
@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "to nothing yet"])
def test_a_record_that_is_a_symbolic_link_is_not_written_through(
    conversations: ConversationStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, dangling: bool
) -> None:
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    if not dangling:
        target.write_text("someone's file\n")
    conversations.path.parent.mkdir()
    conversations.path.symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="openhands_magics"):
        conversations.add(base_url=URL, conversation_id=new_id())  # never raises
        conversations.forget(URL, new_id())
    assert (target.read_text() == "someone's file\n") if not dangling else not target.exists()
    assert conversations.path.is_symlink()
    assert "symbolic link, which is not followed" in caplog.text
    assert conversations.entries() == []  # nor read through


@pytest.mark.skipif(store.fcntl is None, reason="no lock file here (no fcntl)")
def test_a_lock_file_that_is_a_symbolic_link_is_not_followed(
    conversations: ConversationStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("someone's file\n")
    target.chmod(0o644)
    conversations.path.parent.mkdir()
    conversations.path.with_name(conversations.path.name + ".lock").symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="openhands_magics"):
        conversations.add(base_url=URL, conversation_id=new_id())  # never raises
    assert target.read_text() == "someone's file\n" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert "symbolic link, which is not followed" in caplog.text


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_record_left_readable_by_others_is_made_private_on_the_next_write(conversations: ConversationStore) -> None:
    first = new_id()
    conversations.add(base_url=URL, conversation_id=first)
    lock = conversations.path.with_name(conversations.path.name + ".lock")
    conversations.path.chmod(0o644)  # as an older version, a copy or a restored backup may leave it
    if lock.exists():
        lock.chmod(0o666)
    assert [e.conversation_id for e in conversations.entries()] == [first]  # reading alone changes nothing
    second = new_id()
    conversations.add(base_url=URL, conversation_id=second)
    assert stat.S_IMODE(conversations.path.stat().st_mode) == 0o600
    if lock.exists():
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert [e.conversation_id for e in conversations.entries()] == [first, second]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_place_of_the_file_does_not_hang(conversations: ConversationStore) -> None:
    conversations.path.parent.mkdir()
    os.mkfifo(conversations.path)
    assert conversations.entries() == []  # opening it for reading would block until someone writes


def test_reads_only_the_tail_of_a_huge_file(conversations: ConversationStore) -> None:
    wanted = new_id()
    conversations.path.parent.mkdir()
    with open(conversations.path, "wb") as file:
        file.truncate(4 * 1024**3)  # 4 GB of zeros, sparse: reading it all would take seconds and gigabytes
        file.seek(0, os.SEEK_END)
        file.write(
            b"\n"
            + json.dumps(
                {"v": 1, "base_url": URL, "conversation_id": wanted, "at": "2025-01-01T00:00:00+00:00"}
            ).encode()
            + b"\n"
        )
    started = time.monotonic()
    assert [e.conversation_id for e in conversations.entries()] == [wanted]
    assert time.monotonic() - started < 2

    another = new_id()
    conversations.add(base_url=URL, conversation_id=another)  # too big: compacted to what it holds
    assert conversations.path.stat().st_size < 1024
    assert [e.conversation_id for e in conversations.entries()] == [wanted, another]


@pytest.mark.parametrize("cut", [False, True])
def test_the_tail_begins_at_a_whole_line(
    conversations: ConversationStore, monkeypatch: pytest.MonkeyPatch, cut: bool
) -> None:
    """A line cut by the read window is dropped even when what is left of it is a valid record; a line the window
    begins with exactly is kept."""
    first, second = new_id(), new_id()
    lines = [
        json.dumps(
            {"v": 1, "base_url": URL, "conversation_id": conversation, "at": "2025-01-01T00:00:00+00:00"}
        ).encode()
        + b"\n"
        for conversation in (first, second)
    ]
    monkeypatch.setattr(store, "MAX_READ_BYTES", len(lines[0]) + len(lines[1]))
    conversations.path.parent.mkdir()
    conversations.path.write_bytes(b"older lines\n" + (b"X " if cut else b"") + lines[0] + lines[1])
    assert [e.conversation_id for e in conversations.entries()] == ([second] if cut else [first, second])


# ------------------------------------------------------------------------------------------------------ concurrency
def _append_many(path: str, count: int, max_lines: int | None) -> None:
    """One kernel's worth of starts (runs in a child process); with ``max_lines``, each start is two lines (the
    start task, then its conversation id) and the file is compacted often."""
    writer = ConversationStore(path)
    notebook = f"/work/notebook-{os.getpid()}.ipynb"
    if max_lines is None:
        for index in range(count):
            writer.add(
                base_url=URL,
                conversation_id=new_id(),
                task_id=new_id(),
                api="v1",
                notebook=notebook,
                repository=f"octo/repo-{index}",
            )
        return
    writer.max_lines = max_lines
    for index in range(count):
        task = new_id()
        writer.add(base_url=URL, task_id=task, api="v1", notebook=notebook, repository=f"octo/repo-{index}")
        writer.add(base_url=URL, task_id=task, conversation_id=new_id())


def _run_writers(path: Path, processes: int, count: int, max_lines: int | None = None) -> None:
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_append_many, args=(str(path), count, max_lines)) for _ in range(processes)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0] * processes


def test_concurrent_appends_from_four_processes(conversations: ConversationStore) -> None:
    _run_writers(conversations.path, processes=4, count=200)

    raw = conversations.path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 800
    assert all(json.loads(line).keys() == KNOWN_KEYS for line in raw.splitlines())  # no torn or joined lines
    entries = conversations.entries()
    assert len(entries) == len({e.conversation_id for e in entries}) == 800
    assert len({e.notebook for e in entries}) == 4


def test_concurrent_appends_while_compacting(conversations: ConversationStore) -> None:
    """Compaction replaces the file under the writers' feet: no writer may append to the replaced one, and a start
    task compacted away still merges with its conversation id written afterwards."""
    _run_writers(conversations.path, processes=4, count=30, max_lines=100)
    entries = conversations.entries()
    assert len(entries) == len({e.task_id for e in entries}) == 120
    assert all(e.conversation_id and e.task_id and e.api == "v1" and e.notebook and e.repository for e in entries)
    assert conversations.path.read_bytes().count(b"\n") < 240  # it was compacted


# ------------------------------------------------------------------------------------------------------- compaction
def test_compaction_keeps_the_newest_and_applies_tombstones(conversations: ConversationStore) -> None:
    tasks = [new_id() for _ in range(40)]
    ids = [new_id() for _ in range(40)]
    for task, conversation in zip(tasks, ids):
        conversations.add(base_url=URL, task_id=task, repository="octo/demo")
        conversations.add(base_url=URL, task_id=task, conversation_id=conversation)  # two lines each
    conversations.forget(URL, ids[35])
    conversations.forget(URL, tasks[36])
    before = {e.conversation_id: e for e in conversations.entries()}
    assert len(conversations.path.read_bytes().splitlines()) == 82  # nothing compacted yet

    conversations.max_lines, conversations.keep = 50, 20
    last = new_id()
    conversations.add(base_url=URL, conversation_id=last)

    expected = ids[19:35] + ids[37:] + [last]
    assert [e.conversation_id for e in conversations.entries()] == expected
    written = lines_of(conversations.path)
    assert len(written) == 20 and all(line.keys() == KNOWN_KEYS for line in written)  # merged, tombstones gone
    for entry in conversations.entries()[:-1]:
        assert entry == before[entry.conversation_id]  # same ids, fields and first time
    assert stat.S_IMODE(conversations.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in conversations.path.parent.iterdir()) in (
        [conversations.path.name],
        [conversations.path.name, conversations.path.name + ".lock"],
    )  # no temp file left


def test_compaction_by_size_leaves_room_for_the_next_add(conversations: ConversationStore) -> None:
    conversations.max_bytes = 4000
    ids = []
    for _ in range(30):
        ids.append(new_id())
        conversations.add(base_url=URL, conversation_id=ids[-1], notebook="/work/" + "n" * 100 + ".ipynb")
    size = conversations.path.stat().st_size
    assert size <= 3000 + 300
    kept = [e.conversation_id for e in conversations.entries()]
    assert kept == ids[-len(kept) :] and 10 <= len(kept) < 30


# ----------------------------------------------------------------------------------------------------------- places
def test_default_path_honours_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "mine"))
    assert default_path() == tmp_path / "mine" / "conversations.jsonl"
    assert ConversationStore().path == tmp_path / "mine" / "conversations.jsonl"


def test_default_path_is_in_the_jupyter_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(store.DATA_DIR_ENV)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    assert default_path() == tmp_path / "jupyter" / "openhands_magics" / "conversations.jsonl"
    monkeypatch.setitem(sys.modules, "jupyter_core.paths", None)  # not installed: the same rules by hand
    assert default_path() == tmp_path / "jupyter" / "openhands_magics" / "conversations.jsonl"
    monkeypatch.delenv("JUPYTER_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    expected = {
        "darwin": tmp_path / "home" / "Library" / "Jupyter",
        "win32": tmp_path / "appdata" / "jupyter",
    }.get(sys.platform, tmp_path / "xdg" / "jupyter")
    assert default_path() == expected / "openhands_magics" / "conversations.jsonl"


def test_the_process_wide_store_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_store()
    assert get_store() is first and first.path == default_path()
    monkeypatch.setenv(store.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    moved = get_store()
    assert moved is not first and moved.path == tmp_path / "elsewhere" / "conversations.jsonl"
    moved.add(base_url=URL, conversation_id=new_id())
    assert (tmp_path / "elsewhere" / "conversations.jsonl").is_file()
    reset_store()
    assert get_store() is not moved


def test_tests_never_write_the_real_data_directory(private_data_dir: Path) -> None:
    assert get_store().path == private_data_dir / "conversations.jsonl"

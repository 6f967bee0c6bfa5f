"""Issue 18, tab completion for ``%openhands`` / ``%%openhands``: options and command words from the option table,
a command's own options, this kernel's conversation ids where an id goes (and only ours on a magic line), the
repositories it used after ``--repo``; no request to the server for any of these, never a traceback, gone after
``%unload_ext``."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell

from openhands_magics.arguments import OPTIONS
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import Output


def _offered(ip: InteractiveShell, line: str) -> list[str]:
    """What JupyterLab would get for the cursor at the end of ``line`` (IPython's completions API)."""
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(line, len(line))]


def test_options_and_command_words_come_from_the_option_table(ip: InteractiveShell) -> None:
    assert set(_offered(ip, "%openhands --re")) == {"--repo", "--reattach", "--returns"}
    assert set(_offered(ip, "%%openhands --ma")) == {"--map", "--max-running", "--max-cost"}
    assert {"list", "pause", "resume", "delete", "stop", "fix"} <= set(_offered(ip, "%openhands "))
    every = {flag for row in OPTIONS if not row.applies for flag in row.flags if flag.startswith("--")} - {"--"}
    assert every <= set(_offered(ip, "%openhands --"))


def test_a_command_offers_its_own_options_and_api_its_values(ip: InteractiveShell) -> None:
    assert set(_offered(ip, "%openhands list --")) == {"--running", "--repo", "--limit", "--here"}
    assert _offered(ip, "%openhands delete --y") == ["--yes"]
    assert set(_offered(ip, "%openhands --api ")) == {"auto", "v1", "v0"}


def test_ids_of_this_kernels_conversations_come_where_an_id_goes_without_a_request(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    first = ip.run_line_magic("openhands", "--wait --repo octo/demo one")
    second = ip.run_line_magic("openhands", "--wait --repo octo/other two")
    output.read()
    before = len(quick.requests)
    assert set(_offered(ip, "%openhands pause ")) == {second.id, first.id}
    assert _offered(ip, f"%openhands --continue {first.id[:6]}") == [first.id]
    assert len(quick.requests) == before  # ids come from memory, never the network
    # (--repo adds the server's list of the user's repositories: see test_server_completion.py)
    assert {"octo/other", "octo/demo"} <= set(_offered(ip, "%openhands --repo octo/"))


def test_completion_never_shows_a_traceback_and_is_gone_after_unload(ip: InteractiveShell, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from openhands_magics import completion

    def broken() -> list:
        raise RuntimeError("history is broken")

    monkeypatch.setattr(completion, "_history", broken)
    assert not [text for text in _offered(ip, "%openhands pause ") if len(text) == 32]  # no ids, no traceback
    monkeypatch.undo()
    ip.run_line_magic("unload_ext", "openhands_magics")
    try:
        assert "--repo" not in _offered(ip, "%openhands --re")
    finally:
        ip.run_line_magic("load_ext", "openhands_magics")
    ip.run_line_magic("reload_ext", "openhands_magics")
    from openhands_magics.completion import _matcher

    assert ip.Completer.custom_matchers.count(_matcher) == 1  # once, however often loaded


def test_only_ours_are_offered_on_a_magic_line_and_python_names_elsewhere(ip: InteractiveShell) -> None:
    ip.user_ns["repository_frame"] = 1
    assert "repository_frame" not in _offered(ip, "%openhands --repo rep")
    assert "repository_frame" in _offered(ip, "repository_f")

# ruff: noqa: F811 - the fixtures imported from test_commands are used as arguments
"""Issue 14: the package knows its keys and blanks them in everything it prints or sends to the agent.

The keys: ``OPENHANDS_API_KEY``, one given with ``%openhands --login``, an ``ApiKey`` (or text) passed to a client,
credential-like environment values and notebook variables named like a credential. Where: ``--context``, ``--cells``,
``--dry-run``, the message the agent gets (start and follow-up; read back from what the local server received), and
every error line, also when a server echoes the ``Authorization`` header in its error text.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics import _secrets, errors
from openhands_magics._protocol import NO_RETRIES
from openhands_magics.client import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics.config import ApiKey
from openhands_magics.errors import OpenHandsError, ServerError
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import Output, SECRET

LOGIN_KEY = "sk-oh-login-typed-7d2e90b1c4"
#: A key passed explicitly to a client.
EXPLICIT_KEY = "sk-oh-explicit-arg-3b8f61aa09"
#: A notebook variable's value (``github_token``) and another (``db_password``).
TOKEN = "ghp_" + "a1B2" * 9
PASSWORD = "correct horse battery staple"
QUICK = Timeline(starting=0.1, running=0.3)
UNKNOWN = "0123456789abcdef0123456789abcdef"


def _sent(server: LocalOpenHandsServer) -> list[str]:
    """The texts the agent got: first messages and follow-ups, as the server received them."""
    texts = []
    for request in server.posts():
        body = request.body if isinstance(request.body, dict) else {}
        content = body.get("initial_message", body).get("content") or [{}]
        if "text" in content[0]:
            texts.append(content[0]["text"])
    return texts


def _no_prefix_of(key: str, text: str) -> bool:
    """Not even a cut beginning of ``key`` (of ``MIN_CUT`` characters or more) shows in ``text``."""
    return all(key[:length] not in text for length in range(_secrets.MIN_CUT, len(key) + 1))


@pytest.fixture
def login_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOpenHandsServer]:
    """A server taking LOGIN_KEY, named by OPENHANDS_BASE_URL only: the key comes from ``--login``."""
    with LocalOpenHandsServer(LOGIN_KEY, timeline=QUICK) as server:
        monkeypatch.setenv("OPENHANDS_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def logged_in(
    ip: InteractiveShell, login_server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> LocalOpenHandsServer:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": LOGIN_KEY)
    ip.run_line_magic("openhands", "--login")
    assert "kept in memory" in output.read()[0]
    login_server.requests.clear()  # (the question whether it has Cloud's device login: no, so it prompted)
    return login_server


# ------------------------------------------------------------------------------------------ the magic's texts
def test_a_key_given_with_login_is_blanked_in_context_cells_and_what_the_agent_gets(
    ip: InteractiveShell, logged_in: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_cell(f"deploy_with = {LOGIN_KEY!r}", store_history=True)  # a plain name: only the package knows it
    ip.user_ns["settings"] = {"region": "eu-west-1", "auth": LOGIN_KEY}
    output.read()

    handle = ip.run_line_magic("openhands", f"--context settings --cells 1 Deploy with {LOGIN_KEY} to eu-west-1")

    assert handle is not None
    [text] = _sent(logged_in)
    assert LOGIN_KEY not in text and _no_prefix_of(LOGIN_KEY, text)
    assert text.startswith("Deploy with ******** to eu-west-1")
    assert "'region': 'eu-west-1', 'auth': '********'" in text and "deploy_with = '********'" in text
    out, err = output.read()
    assert LOGIN_KEY not in out + err


def test_a_key_given_with_login_is_blanked_in_the_dry_run(
    ip: InteractiveShell, logged_in: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_cell(f"deploy_with = {LOGIN_KEY!r}", store_history=True)
    ip.user_ns["settings"] = {"auth": LOGIN_KEY}
    output.read()

    ip.run_cell(f"%openhands --dry-run --context settings --cells 1 Deploy with {LOGIN_KEY}", store_history=True)

    out, err = output.read()
    assert out.startswith("openhands: dry run, nothing was sent.") and err == ""
    assert LOGIN_KEY not in out and "Deploy with ********" in out and "deploy_with = '********'" in out
    assert logged_in.requests == []


def test_a_dry_run_of_a_fan_out_blanks_a_key_in_its_items(
    ip: InteractiveShell, logged_in: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["targets"] = [f"token={LOGIN_KEY}", "plain"]
    ip.run_cell("%%openhands --dry-run --map targets\nCheck {item}", store_history=True)
    out, _ = output.read()
    assert "Check token=********" in out and "Check plain" in out and LOGIN_KEY not in out
    assert _no_prefix_of(LOGIN_KEY, out)  # the item's repr in each header is cut at 60 characters


def test_notebook_variables_named_like_credentials_are_blanked_and_short_or_other_values_are_not(
    ip: InteractiveShell, logged_in: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_cell(
        f"github_token = {TOKEN!r}\ndb_password = {PASSWORD!r}\ncache_key = '1'\nmonkey_count = 1", store_history=True
    )
    ip.user_ns["city"] = "Copenhagen-2025"  # a long value, but not named like a credential
    output.read()

    ip.run_cell(
        "%openhands --dry-run --context github_token,db_password,cache_key,city --cells 1 "
        f"Push with {TOKEN} from Copenhagen-2025 in 1 step",
        store_history=True,
    )

    out, _ = output.read()
    assert TOKEN not in out and PASSWORD not in out
    assert "Push with ******** from Copenhagen-2025 in 1 step" in out
    assert "github_token = '********'\ndb_password = '********'\ncache_key = '1'\nmonkey_count = 1" in out
    assert "### github_token (str)\n\n```\n'********'\n```" in out
    assert "'1'" in out and "'Copenhagen-2025'" in out  # "1" is too short to be told from ordinary text

    ip.run_line_magic("openhands", f"--context github_token Push with {TOKEN}")
    [text] = _sent(logged_in)
    assert TOKEN not in text and text.startswith("Push with ********")
    output.read()


# -------------------------------------------------------------------------------------------- error lines
@pytest.mark.parametrize("status", [401, 500])
def test_a_server_that_echoes_the_authorization_header_gets_no_key_printed(
    ip: InteractiveShell, logged_in: LocalOpenHandsServer, output: Output, status: int
) -> None:
    logged_in.inject(
        status=status, body={"detail": f"rejected header Authorization: Bearer {LOGIN_KEY}"}, method="POST", times=5
    )
    assert ip.run_line_magic("openhands", "Fix the typo") is None
    line = output.one_error_line()
    assert "Bearer ********" in line and LOGIN_KEY not in line


def test_a_key_cut_short_at_the_end_of_an_echoed_error_is_blanked_too(server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=server.base_url, api="v1", timeout=2.0, retry=NO_RETRIES) as client:
        for pad in range(180, 200):  # wherever the server's text is cut (an error line shows its first 200 characters)
            server.inject(
                status=500, body={"detail": "x" * pad + f" Bearer {SECRET} and more text after it"}, method="GET"
            )
            with pytest.raises(ServerError) as raised:
                client.get_conversation(UNKNOWN)
            assert _no_prefix_of(SECRET, str(raised.value)), (pad, str(raised.value))


@pytest.mark.parametrize(
    "error_type",
    [
        errors.OpenHandsError,
        errors.ConfigurationError,
        errors.UnsupportedApiError,
        errors.ValidationError,
        errors.AuthenticationError,
        errors.BadRequestError,
        errors.NotFoundError,
        errors.ConflictError,
        errors.RateLimitError,
        errors.ServerError,
        errors.TransportError,
        errors.ProtocolError,
        errors.WaitTimeout,
    ],
)
def test_every_error_of_the_tree_is_blanked_as_it_is_made(error_type: type[OpenHandsError]) -> None:
    ApiKey(EXPLICIT_KEY)  # known to the package from now on
    error = error_type(f"The server said: Bearer {EXPLICIT_KEY} is wrong.")
    for shown in (str(error), repr(error), repr(error.args), str(pickle.loads(pickle.dumps(error)))):
        assert EXPLICIT_KEY not in shown and "Bearer ********" in shown


# ------------------------------------------------------------------------------------- the Python API
def test_an_explicit_key_is_blanked_in_what_the_agent_gets_start_and_follow_up() -> None:
    with LocalOpenHandsServer(EXPLICIT_KEY, timeline=Timeline(starting=0.05, running=30.0)) as server:
        with OpenHandsClient(ApiKey(EXPLICIT_KEY), base_url=server.base_url, timeout=3.0) as client:
            started = client.start_conversation(f"Use {EXPLICIT_KEY} to deploy")
            conversation = started
            for _ in range(200):
                conversation = client.refresh(conversation)
                if conversation.conversation_id:
                    break
            client.send_message(conversation, f"and again: key={EXPLICIT_KEY}")

        async def follow_up_async() -> None:
            async with AsyncOpenHandsClient(EXPLICIT_KEY, base_url=server.base_url, timeout=3.0) as aclient:
                await aclient.send_message(conversation, f"async {EXPLICIT_KEY}")
                await aclient.start_conversation(f"async start {EXPLICIT_KEY}")

        asyncio.run(follow_up_async())

        texts = _sent(server)
    assert texts == ["Use ******** to deploy", "and again: key=********", "async ********", "async start ********"]
    assert all(EXPLICIT_KEY not in str(request.body) for request in server.requests)


def test_the_known_secrets_never_show_themselves() -> None:
    ApiKey(EXPLICIT_KEY)
    known = _secrets.secrets({"api_key": TOKEN})
    assert EXPLICIT_KEY in known and TOKEN in known  # (what blanking uses)
    for shown in (repr(known), str(known), repr(_secrets._keys), str(list(_secrets._keys))):  # noqa: SLF001
        assert EXPLICIT_KEY not in shown and TOKEN not in shown
    with pytest.raises(TypeError):
        pickle.dumps(known)
    with pytest.raises(TypeError):
        pickle.dumps(_secrets._keys)  # noqa: SLF001 - its ApiKeys refuse


def test_values_too_short_to_tell_from_text_are_never_blanked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_TOKEN", "true")
    monkeypatch.setenv("LOCALE_KEY", "en_US")
    text = "Set it to true for en_US in 1 step, like 12345678."
    assert _secrets.blank(text, {"key": "1", "password": "12345678"}) == text

"""The V1 app server's lists of what a start may name: the user's repositories (``/api/v1/git/repositories/search``),
a repository's branches (``/api/v1/git/branches/search``) and the models (``/api/v1/config/models/search``), with
1.11.0's shapes (``RepositoryPage``, ``BranchPage``, ``LLMModelPage``) and errors: ``provider`` is required on the
git routes (422), ``repository`` and ``query`` on the branches one, and without a git provider token (the server's
``git_token=False``; the real self-hosted one has none) both git routes answer 403 "Git provider token required".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fastapi import HttpError, Query, page, route
from ._http import RecordedRequest, Reply

if TYPE_CHECKING:
    from ._fastapi import Route
    from .server import LocalOpenHandsServer

__all__ = ["BRANCHES", "MODELS", "routes"]

#: The branches every repository of the local server has.
BRANCHES = ("main", "dev", "feature/login")
#: (provider, name, verified) of the models it offers, a few of 1.11.0's verified ones and one unverified.
MODELS = (
    ("anthropic", "claude-sonnet-4-5", True),
    ("anthropic", "claude-haiku-4-5-20251001", True),
    ("openai", "gpt-5", True),
    ("openai", "fake-model", False),
)
_NO_TOKEN = "Git provider token required (such as GitHub)."


def routes(server: LocalOpenHandsServer) -> list[Route]:
    def git_token() -> None:
        if not server.git_token:
            raise HttpError(403, _NO_TOKEN)

    def repositories(request: RecordedRequest) -> Reply:
        query = Query(request)
        query.required("provider")
        limit = query.integer("limit", 100, gt=0, le=100) or 100
        query.check()
        git_token()
        wanted = (query.text("query") or "").lower()
        names = sorted(server.repositories) if server.repositories is not None else ["octo/demo", "octo/tools"]
        items = [_repository(n) for n in names if wanted in n.lower()]
        shown, next_page = page(items, query.text("page_id"), limit)
        return Reply(200, {"items": shown, "next_page_id": next_page})

    def branches(request: RecordedRequest) -> Reply:
        query = Query(request)
        query.required("provider")
        query.required("repository")
        wanted = (query.required("query") or "").lower()
        limit = query.integer("limit", 30, gt=0, le=100) or 30
        query.check()
        git_token()
        items = [_branch(name) for name in BRANCHES if wanted in name.lower()]
        shown, next_page = page(items, query.text("page_id"), limit)
        return Reply(200, {"items": shown, "next_page_id": next_page})

    def models(request: RecordedRequest) -> Reply:
        query = Query(request)
        limit = query.integer("limit", 50, gt=0, le=100) or 50
        verified = query.text("verified__eq")
        query.check()
        wanted = (query.text("query") or "").lower()
        items = [
            {"provider": provider, "name": name, "verified": ok, "hidden": False, "canonical": None}
            for provider, name, ok in MODELS
            if wanted in name.lower() and (verified is None or ok == (verified.lower() == "true"))
        ]
        shown, next_page = page(items, query.text("page_id"), limit)
        return Reply(200, {"items": shown, "next_page_id": next_page})

    return [
        route(("GET",), r"/api/v1/git/repositories/search", repositories),
        route(("GET",), r"/api/v1/git/branches/search", branches),
        route(("GET",), r"/api/v1/config/models/search", models),
    ]


def _repository(full_name: str) -> dict[str, Any]:
    return {
        "id": str(abs(hash(full_name)) % 10**9),
        "full_name": full_name,
        "git_provider": "github",
        "is_public": True,
        "stargazers_count": 0,
        "link_header": None,
        "pushed_at": None,
        "owner_type": "user",
        "main_branch": "main",
    }


def _branch(name: str) -> dict[str, Any]:
    return {"name": name, "commit_sha": "0" * 40, "protected": name == "main", "last_push_date": None}

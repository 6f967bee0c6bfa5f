"""How the real server's framework (FastAPI + pydantic) answers: routing, 404/405, validation errors, time stamps.

A client meets these answers whenever it sends something the server does not expect, so the local server spells
them the same way (``{"detail": [{"type", "loc", "msg", "input"}]}`` for a 422, ``{"detail": "Not Found"}``...).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any

from ._http import RawBody, RecordedRequest, Reply

Handler = Callable[..., Reply]
Route = tuple[Sequence[str], "re.Pattern[str]", Handler]
Problem = dict[str, Any]
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


class HttpError(Exception):
    """Raised by a route to answer ``status`` with ``{"detail": detail}``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.reply = Reply(status, {"detail": detail})


def problem(kind: str, loc: Sequence[str | int], msg: str, value: Any, ctx: dict[str, Any] | None = None) -> Problem:
    """One item of a 422 ``detail`` list, as pydantic writes it."""
    item = {"type": kind, "loc": list(loc), "msg": msg, "input": value}
    return {**item, "ctx": ctx} if ctx else item


def route(methods: Sequence[str], pattern: str, handler: Handler) -> Route:
    """A route: ``pattern`` must match the whole path; its named groups become the handler's keyword arguments."""
    return methods, re.compile(pattern), handler


def dispatch(routes: Sequence[Route], request: RecordedRequest) -> Reply:
    """Run the first route for this method and path; 405 if the path exists for other methods only, else 404."""
    path_known = False
    for methods, pattern, handler in routes:
        match = pattern.fullmatch(request.path)
        if match and request.method in methods:
            try:
                return handler(request, **match.groupdict())
            except HttpError as error:
                return error.reply
        path_known = path_known or bool(match)
    return Reply(405, {"detail": "Method Not Allowed"}) if path_known else Reply(404, {"detail": "Not Found"})


def json_object(body: Any) -> dict[str, Any]:
    """The request body as a JSON object, or the 422 pydantic gives for a missing, broken or non-object body."""
    if isinstance(body, RawBody):
        raise HttpError(422, [problem("json_invalid", ["body", 0], "JSON decode error", {}, {"error": body.error})])
    if body is None:
        raise HttpError(422, [problem("missing", ["body"], "Field required", None)])
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise HttpError(422, [problem("model_attributes_type", ["body"], msg, body)])
    return body


def string_problems(body: dict[str, Any], names: Sequence[str]) -> list[Problem]:
    """422 items for the named body fields that are present, not null and not strings."""
    return [
        problem("string_type", ["body", name], "Input should be a valid string", body[name])
        for name in names
        if body.get(name) is not None and not isinstance(body[name], str)
    ]


def boolean_field(body: dict[str, Any], name: str, default: bool, problems: list[Problem]) -> bool:
    """A boolean body field read as pydantic's lax mode reads JSON (true/false, 0/1, "yes"/"no"...); a problem
    added to ``problems`` for anything else."""
    value = body.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    if isinstance(value, (str, int, float)):
        msg = "Input should be a valid boolean, unable to interpret input"
        problems.append(problem("bool_parsing", ["body", name], msg, value))
    else:
        problems.append(problem("bool_type", ["body", name], "Input should be a valid boolean", value))
    return default


class Query:
    """Reads query parameters like FastAPI: collects every problem, then :meth:`check` raises one 422."""

    def __init__(self, request: RecordedRequest) -> None:
        self.values = request.query
        self.problems: list[Problem] = []

    def repeated(self, name: str) -> list[str]:
        """A required repeated parameter (``?ids=a&ids=b``)."""
        if name not in self.values:
            self.problems.append(problem("missing", ["query", name], "Field required", None))
        return self.values.get(name, [])

    def required(self, name: str) -> str | None:
        """A required parameter's (last) value; ``None`` (and a problem) if it is missing."""
        if name not in self.values:
            self.problems.append(problem("missing", ["query", name], "Field required", None))
        return self.text(name)

    def text(self, name: str) -> str | None:
        """An optional parameter's (last) value."""
        return self.values.get(name, [None])[-1]

    def integer(self, name: str, default: int | None, *, gt: int | None = None, le: int | None = None) -> int | None:
        """An optional integer parameter, within ``gt`` and ``le`` if given."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            self.problems.append(problem("int_parsing", ["query", name], msg, raw))
            return default
        if gt is not None and value <= gt:
            msg = f"Input should be greater than {gt}"
            self.problems.append(problem("greater_than", ["query", name], msg, raw, {"gt": gt}))
        if le is not None and value > le:
            msg = f"Input should be less than or equal to {le}"
            self.problems.append(problem("less_than_equal", ["query", name], msg, raw, {"le": le}))
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """An optional boolean parameter, spelled any way FastAPI takes (true/false, 1/0, yes/no, on/off)."""
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        msg = "Input should be a valid boolean, unable to interpret input"
        self.problems.append(problem("bool_parsing", ["query", name], msg, raw))
        return default

    def check(self) -> None:
        """Raise the 422 for every problem found so far."""
        if self.problems:
            raise HttpError(422, self.problems)


def page(items: list[Any], page_id: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the next page's id: an offset as text, as the real server's SQL services do."""
    start = int(page_id) if page_id and page_id.isdigit() else 0
    end = start + limit
    return items[start:end], str(end) if end < len(items) else None


def iso(timestamp: float, *, naive: bool = False) -> str:
    """A UTC time as the real server's JSON spells it: ``...Z``, or naive (no zone) where it reads times back."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).replace(tzinfo=None)
    text = moment.isoformat(timespec="microseconds")
    return text if naive else text + "Z"

"""The text a command sends: the message (``{{name}}`` filled when asked), then the described variables and the
cells above; for ``--map``, the template and the items. Shared by start, fix, follow-up, fan-out and dry-run."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .. import context as notebook
from ..errors import ValidationError

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context

__all__ = ["compose_message", "fan_out_task", "message_and_context"]


def compose_message(context: Context, invocation: Invocation, message: str | None = None) -> str:
    """The text to send: ``message`` (default: the line's), ``{{name}}`` filled in when asked, then the described
    variables and the cells above, within a total size; a bad name is one line and nothing is sent."""
    message, sections = message_and_context(context, invocation, message)
    return notebook.compose(message, sections) if sections else message


def message_and_context(
    context: Context, invocation: Invocation, message: str | None = None, *, template: bool = False
) -> tuple[str, list[tuple[str, str]]]:
    """The message (``{{name}}`` filled when asked; ``message`` given as it is, e.g. ``fix``'s last error) and the
    context sections to append to it. ``template``: the message is a ``--map`` template, so the filled values have
    their braces doubled (a dict's repr is a value, not a placeholder of the template)."""
    namespace = context.namespace
    if message is None:
        message = invocation.message
        if invocation.expand or context.settings.expand:
            message = notebook.expand(message, _BracesDoubled.namespace(namespace) if template else namespace)
    sections = []
    if invocation.context:
        sections.append(("Variables", notebook.describe(invocation.context, namespace)))
    if invocation.cells:
        sections.append(
            ("Cells above", notebook.cells_above(context.shell, int(invocation.cells), errors=context.errors))
        )
    if sections:  # (the context begins with its own blank line: a cell body's last line break would widen it)
        message = message.rstrip("\r\n")
    # A key typed into the message is blanked by the client, on the way to the agent, as every text it sends; a dry
    # run blanks what it prints. (The sections are blanked already.)
    return message, sections


class _BracesDoubled:
    """A notebook value seen through a ``{{name}}`` placeholder of a ``--map`` template: its ``str`` has its braces
    doubled, so ``str.format`` gives them back as they were instead of reading them as fields."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getattr__(self, name: str) -> _BracesDoubled:
        return _BracesDoubled(getattr(self._value, name))

    def __getitem__(self, key: Any) -> _BracesDoubled:
        return _BracesDoubled(self._value[key])

    def __str__(self) -> str:
        return str(self._value).replace("{", "{{").replace("}", "}}")

    @staticmethod
    def namespace(namespace: Mapping[str, Any]) -> Mapping[str, Any]:
        class Doubled(Mapping[str, Any]):
            def __getitem__(self, name: str) -> Any:
                return _BracesDoubled(namespace[name])

            def __iter__(self) -> Iterator[str]:
                return iter(namespace)

            def __len__(self) -> int:
                return len(namespace)

        return Doubled()


def fan_out_task(context: Context, invocation: Invocation) -> tuple[list[Any], Callable[[Any], str]]:
    """``--map ITEMS``: the items, and the task as a function of the item. ``{item}`` is filled in the message
    first, then the context is appended: the context is the notebook's text (a dict's repr, an f-string in a
    cell), never part of the template, so its braces are left alone."""
    from ..batch import _messages

    namespace = context.namespace
    if invocation.map_over not in namespace:
        raise ValidationError(
            f"--map {invocation.map_over}: no variable {invocation.map_over!r} in the notebook; nothing was sent."
        )
    items = namespace[invocation.map_over]
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValidationError(
            f"--map {invocation.map_over} needs a list (or any iterable) of items, not a {type(items).__name__}."
        )
    items = list(items)
    template, sections = message_and_context(context, invocation, template=True)
    _messages(template, items)  # a bad template is the batch's own line for a template, and nothing is sent

    def task(item: Any) -> str:
        message = template.format(item=item)
        return notebook.compose(message, sections) if sections else message

    return items, task

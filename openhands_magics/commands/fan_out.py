"""``%openhands --map ITEMS``: one conversation per item. Where nobody watches (nbconvert, papermill) it waits for
the whole batch, as a single ``%openhands`` waits, so the saved notebook holds the final grid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .compose import fan_out_task
from .start import start_keywords

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context


def run(context: Context, invocation: Invocation) -> None:
    from IPython.display import display

    from .start import extras

    items, task = fan_out_task(context, invocation)
    uploads, schema = extras(context, invocation)
    batch = context.session.map(
        task,
        items,
        repository=invocation.repo,
        max_running=int(invocation.max_running or 10),
        endpoint=context.server,
        max_cost=invocation.max_cost,
        **start_keywords(invocation),
        upload=uploads,
        returns=schema,
    )
    display(batch)
    if invocation.wait or (context.settings.headless_wait and context.headless):
        batch.wait(invocation.timeout)
        print(batch.summary, flush=True)
    return None

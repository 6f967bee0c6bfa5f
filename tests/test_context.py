"""Notebook context for a task (``openhands_magics.context``): placeholders, variable descriptions, cells, errors.

Cells run in a real in-process IPython shell, with ``store_history=True`` as a notebook runs them, so ``In``, the
execution counts and ``sys.last_*`` are IPython's own. Every refusal must be one line, and no credential-like
environment value may come out of any of these functions.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from IPython import get_ipython
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython

from openhands_magics import context
from openhands_magics.context import ErrorLog, cells_above, compose, describe, expand, last_error_task
from openhands_magics.errors import ValidationError

KEY = "sk-test-4b1d9e0c7a5f3e21"


def one_line_error(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.strip() == message and message
    return message


class Thing:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __repr__(self) -> str:
        return f"Thing({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


# --------------------------------------------------------------------------------------------------------------------
# expand


@pytest.fixture
def ns() -> dict[str, Any]:
    return {
        "x": 42,
        "name": "Ada",
        "lst": [10, 20, 30],
        "d": {"k": Thing(attr=[0, 1, "two"]), "key with space": "spaced", 'q"': "dq"},
        "obj": Thing(inner=Thing(val="deep")),
        "_": "last output",
        "_private": 7,
        "template": "{{x}} is not expanded again",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{x}}", "42"),
        ("{{ x }}", "42"),
        ("{{   x}} and {{name  }}", "42 and Ada"),
        ("{{obj.inner.val}}", "deep"),
        ("{{lst[0]}}", "10"),
        ("{{lst[-1]}}", "30"),
        ("{{ lst[ 1 ] }}", "20"),
        ('{{d["k"].attr[2]}}', "two"),
        ("{{d['k'].attr[2]}}", "two"),
        ("{{d['key with space']}}", "spaced"),
        ("{{d['q\"']}}", "dq"),
        ("{{_}} {{_private}}", "last output 7"),
        ("{{d['k']}}", "Thing(attr=[0, 1, 'two'])"),
        ("no placeholders at all", "no placeholders at all"),
        ("{x} {name} {} }} {", "{x} {name} {} }} {"),
        (r"\{{x}} stays, {{x}} goes", "{{x}} stays, 42 goes"),
        (r"\{{ not a placeholder(1+2) }}", "{{ not a placeholder(1+2) }}"),
        ("line1\n{{x}}\nline3", "line1\n42\nline3"),
        ("{{template}}", "{{x}} is not expanded again"),
    ],
)
def test_expand_replaces_placeholders(ns: dict[str, Any], text: str, expected: str) -> None:
    assert expand(text, ns) == expected


def test_expand_shape_of_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": range(7), "b": range(7)})
    assert expand("rows: {{df.shape[0]}}, cols: {{ df.shape[1] }}", {"df": frame}) == "rows: 7, cols: 2"


def test_expand_unknown_name_is_one_line(ns: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        expand("look at {{ nope.attr }}", ns)
    assert one_line_error(excinfo) == "{{nope.attr}}: no variable 'nope' in the notebook; nothing was sent."


def test_expand_does_not_reach_builtins(ns: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="no variable 'len'"):
        expand("{{len}}", ns)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "{{obj.missing}}",
            "{{obj.missing}}: AttributeError: 'Thing' object has no attribute 'missing'; nothing was sent.",
        ),
        ("{{lst[9]}}", "{{lst[9]}}: IndexError: list index out of range; nothing was sent."),
        ("{{d['nokey']}}", "{{d['nokey']}}: KeyError: 'nokey'; nothing was sent."),
        ("{{x[0]}}", "{{x[0]}}: TypeError: 'int' object is not subscriptable; nothing was sent."),
    ],
)
def test_expand_failed_access_names_expression_and_error(ns: dict[str, Any], text: str, error: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        expand(text, ns)
    assert one_line_error(excinfo) == error


def test_expand_multi_line_error_message_is_folded() -> None:
    class Picky:
        def __getitem__(self, key: Any) -> Any:
            raise LookupError("first line\nsecond line")

    with pytest.raises(ValidationError) as excinfo:
        expand("{{p[0]}}", {"p": Picky()})
    assert one_line_error(excinfo) == "{{p[0]}}: LookupError: first line second line; nothing was sent."


def test_expand_str_that_raises_is_one_line() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    with pytest.raises(ValidationError) as excinfo:
        expand("{{b}}", {"b": Broken()})
    assert one_line_error(excinfo) == "{{b}}: RuntimeError: no text; nothing was sent."


@pytest.mark.parametrize(
    "placeholder",
    [
        "{{f()}}",
        "{{x.bit_length()}}",
        "{{x+1}}",
        "{{ x * 2 }}",
        "{{-x}}",
        "{{lst[0:2]}}",
        "{{lst[x]}}",
        "{{d[k]}}",
        "{{lst[1+1]}}",
        "{{__import__('os')}}",
        "{{x if x else 0}}",
        "{{ }}",
        "{{1}}",
        "{{x.}}",
        "{{x[0}}",
        "{{d['k]}}",
        "{{x y}}",
        "{{{x}}}",
    ],
)
def test_expand_refuses_anything_but_names_attributes_and_indexes(ns: dict[str, Any], placeholder: str) -> None:
    called = []
    ns["f"] = lambda: called.append(1)
    with pytest.raises(ValidationError) as excinfo:
        expand(f"before {placeholder} after", ns)
    message = one_line_error(excinfo)
    assert message.startswith("Cannot expand {{")
    assert "attribute and [index] access only" in message
    assert "\\{{" in message  # says how to write literal braces
    assert not called


def test_expand_unclosed_placeholder(ns: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        expand("use {{x to do it", ns)
    message = one_line_error(excinfo)
    assert message.startswith("Cannot expand {{x to do it: there is no closing }}")


def test_expand_shows_at_most_60_characters_of_a_bad_placeholder(ns: dict[str, Any]) -> None:
    placeholder = "{{f(" + "y" * 200 + ")}}"
    with pytest.raises(ValidationError) as excinfo:
        expand(placeholder, ns)
    message = one_line_error(excinfo)
    shown = message.removeprefix("Cannot expand ").split(": ", 1)[0]
    assert len(shown) == 60 and shown.startswith("{{f(yyy") and shown.endswith("…")
    with pytest.raises(ValidationError) as excinfo:
        expand("{{" + "z" * 200, ns)
    assert "z" * 70 not in one_line_error(excinfo)


def test_expand_caps_each_value(ns: dict[str, Any]) -> None:
    ns["exact"] = "a" * context.MAX_EXPANSION
    ns["big"] = "b" * (context.MAX_EXPANSION + 1)
    assert expand("{{exact}}", ns) == ns["exact"]
    with pytest.raises(ValidationError) as excinfo:
        expand("{{exact}} {{big}}", ns)
    message = one_line_error(excinfo)
    assert message.startswith("{{big}} is 10,001 characters long")
    assert "--context big" in message


# --------------------------------------------------------------------------------------------------------------------
# describe


def test_describe_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "id": range(1000),
            "price": [i / 4 for i in range(1000)],
            "label": [f"row{i}" for i in range(1000)],
            "a|b": ["pipe|inside"] * 1000,
            "long": ["L" * 100] * 1000,
        }
    )
    text = describe(["df"], {"df": frame}, max_chars=100_000)
    assert text.startswith("### df (pandas DataFrame, 1,000 rows × 5 columns)\n")
    assert "| column | dtype |" in text
    assert "| id | int64 |" in text and "| price | float64 |" in text
    assert "| a\\|b |" in text  # column names are escaped too
    assert "| 4 | 4 | 1.0 | row4 | pipe\\|inside | " + "L" * 39 + "… |" in text
    assert "row5" not in text  # head(5) only
    assert "L" * 40 not in text  # cells cut at 40 characters
    assert "more column" not in text


def test_describe_wide_dataframe_shows_20_columns() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([[f"v{r}_{c}" for c in range(33)] for r in range(3)], columns=[f"c{c}" for c in range(33)])
    text = describe(["wide"], {"wide": frame}, max_chars=100_000)
    assert text.startswith("### wide (pandas DataFrame, 3 rows × 33 columns)")
    assert "| c19 | object |" in text or "| c19 | str |" in text
    assert "c20" not in text and "v0_20" not in text
    assert "v2_19" in text
    assert text.count("… 13 more columns") == 2  # under the dtypes and under the rows


def test_describe_dataframe_uses_to_markdown_when_tabulate_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas")
    monkeypatch.setattr(context, "_has_tabulate", lambda: True)
    monkeypatch.setattr(
        pd.DataFrame, "to_markdown", lambda self, *a, **k: f"MARKDOWN {len(self)}x{self.shape[1]}", raising=False
    )
    text = describe(["df"], {"df": pd.DataFrame({"a": range(9)})})
    assert "MARKDOWN 5x1" in text


def test_describe_series() -> None:
    pd = pytest.importorskip("pandas")
    series = pd.Series([1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5], name="price")
    text = describe(["s"], {"s": series})
    assert text.startswith("### s (pandas Series 'price', 7 values, dtype float64)")
    assert "| 4 | 5.5 |" in text
    assert "6.5" not in text
    unnamed = describe(["t"], {"t": pd.Series([1])})
    assert unnamed.startswith("### t (pandas Series, 1 value, dtype int64)")


def test_describe_ndarray() -> None:
    np = pytest.importorskip("numpy")
    small = describe(["a"], {"a": np.arange(6, dtype=np.int32).reshape(2, 3)})
    assert small.startswith("### a (numpy ndarray, shape (2, 3), dtype int32)")
    assert "[[0 1 2]\n [3 4 5]]" in small
    big = describe(["b"], {"b": np.random.default_rng(0).random((500, 500))})
    assert big.startswith("### b (numpy ndarray, shape (500, 500), dtype float64)")
    sample = big.split("```\n", 1)[1].rsplit("\n```", 1)[0]
    assert "..." in sample and len(sample) <= context.MAX_ARRAY_SAMPLE


def test_describe_plain_objects() -> None:
    text = describe(["d", "t"], {"d": {"a": 1}, "t": Thing(n=1)})
    assert text == ("### d (dict)\n\n```\n{'a': 1}\n```\n\n### t (tests.test_context.Thing)\n\n```\nThing(n=1)\n```")


def test_describe_fence_survives_backticks_in_repr() -> None:
    text = describe(["s"], {"s": "```python\nboom\n```"})
    assert text.startswith("### s (str)\n\n````\n")
    assert text.endswith("\n````")


def test_describe_huge_repr_is_truncated() -> None:
    text = describe(["big"], {"big": list(range(10_000))}, max_chars=100_000)
    body = text.split("```\n", 1)[1].split("\n```", 1)[0]
    assert len(body) == context.MAX_REPR
    assert text.endswith(f"\n```\n… (truncated: the repr is {len(repr(list(range(10_000)))):,} characters long)")


def test_describe_repr_that_raises() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("nope")

    text = describe(["b"], {"b": Broken()})
    assert text == (
        "### b (tests.test_context.test_describe_repr_that_raises.<locals>.Broken)\n\n(repr failed: RuntimeError)"
    )


def test_describe_only_uses_repr_on_lookalikes() -> None:
    """Something that looks like an array but is not numpy's is not probed: only ``repr`` runs."""
    touched: list[str] = []

    class Spy:
        shape = (2, 2)
        dtype = "float64"
        ndim = 2

        def __getattr__(self, name: str) -> Any:
            touched.append(name)
            raise AttributeError(name)

        def head(self, n: int = 5) -> Any:
            touched.append("head")

        def __repr__(self) -> str:
            return "Spy()"

    text = describe(["spy"], {"spy": Spy()})
    assert text.endswith("```\nSpy()\n```")
    assert touched == []


def test_describe_cap_cuts_and_says_so() -> None:
    namespace = {"small": 1, "big1": "x" * 450, "big2": "y" * 450}
    text = describe(["small", "big1", "big2"], namespace, max_chars=600)
    assert len(text) <= 600
    assert text.startswith("### small (int)\n\n```\n1\n```")  # short sections stay whole
    cuts = re.findall(r"… cut: ([\d,]+) characters of (\w+)'s description", text)
    assert [name for _, name in cuts] == ["big1", "big2"]
    assert text.count("```") % 2 == 0  # code blocks cut open are closed again
    for cap in (50, 120, 300, 999):
        assert len(describe(["small", "big1", "big2"], namespace, max_chars=cap)) <= cap


def test_describe_unknown_and_non_names() -> None:
    with pytest.raises(ValidationError) as excinfo:
        describe(["x", "nope"], {"x": 1})
    assert "no variable 'nope' in the notebook; nothing was sent." in one_line_error(excinfo)
    with pytest.raises(ValidationError) as excinfo:
        describe(["df.shape"], {"df": 1})
    assert one_line_error(excinfo).startswith("'df.shape' is not a variable name")


def test_describe_nothing() -> None:
    assert describe([], {}) == ""


# --------------------------------------------------------------------------------------------------------------------
# cells_above, ErrorLog, last_error_task (a real shell)


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    start_ipython()  # once per process; later calls are no-ops
    ip = get_ipython()
    assert ip is not None
    forget_last_exception()
    ip.user_ns["ctx_mod"] = context
    yield ip
    for name in [n for n in ip.user_ns if n.startswith("ctx_")]:
        del ip.user_ns[name]
    forget_last_exception()


def forget_last_exception() -> None:
    """IPython keeps the last exception in ``sys.last_*`` (as pytest does for a failed test): start clean, end clean."""
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


@pytest.fixture
def log(shell: InteractiveShell) -> Iterator[ErrorLog]:
    errors = ErrorLog()
    errors.install(shell)
    shell.user_ns["ctx_log"] = errors
    yield errors
    errors.uninstall(shell)


def run(shell: InteractiveShell, source: str) -> int:
    """Run a cell as a notebook does; returns its execution count."""
    result = shell.run_cell(source, store_history=True)
    assert result.execution_count is not None
    return result.execution_count


def block(number: int, source: str) -> str:
    return f"### In [{number}]\n\n```python\n{source}\n```"


def test_cells_above_from_a_cell(shell: InteractiveShell, log: ErrorLog) -> None:
    first = run(shell, "ctx_a = 41")
    second = run(shell, "ctx_b = ctx_a + 1\nctx_b")
    failing = run(shell, "ctx_c = {}\nctx_c['missing']")
    current = run(shell, "ctx_out = ctx_mod.cells_above(get_ipython(), 3, errors=ctx_log)")
    text = shell.user_ns["ctx_out"]
    assert text.startswith(block(first, "ctx_a = 41") + "\n\n" + block(second, "ctx_b = ctx_a + 1\nctx_b"))
    assert block(failing, "ctx_c = {}\nctx_c['missing']") + "\n\nError:\n\n```text\nTraceback" in text
    assert text.rstrip().endswith("KeyError: 'missing'\n```")
    assert text.count("\n\nError:\n\n") == 1  # only under the cell that raised
    assert f"In [{current}]" not in text and "cells_above" not in text  # the running cell is not "above"
    assert "\x1b[" not in text and "interactiveshell.py" not in text  # no colours, no IPython frames

    run(shell, "ctx_out = ctx_mod.cells_above(get_ipython(), 1, errors=ctx_log)")
    assert shell.user_ns["ctx_out"] == block(current, "ctx_out = ctx_mod.cells_above(get_ipython(), 3, errors=ctx_log)")


def test_cells_above_without_error_log_shows_no_errors(shell: InteractiveShell) -> None:
    failing = run(shell, "ctx_x = 1 / 0")
    run(shell, "ctx_out = ctx_mod.cells_above(get_ipython(), 1)")
    assert shell.user_ns["ctx_out"] == block(failing, "ctx_x = 1 / 0")


def test_cells_above_outside_a_cell_includes_the_last_cell(shell: InteractiveShell) -> None:
    last = run(shell, "ctx_z = 'last one'")
    assert cells_above(shell, 1) == block(last, "ctx_z = 'last one'")
    assert cells_above(shell, 0) == ""


def test_cells_above_from_a_cell_kept_out_of_the_history(shell: InteractiveShell) -> None:
    """A cell run without storing it (no In [n]) is not the last history entry: that entry is above it."""
    last = run(shell, "ctx_w = 'stored'")
    shell.run_cell("ctx_out = ctx_mod.cells_above(get_ipython(), 1)", store_history=False)
    assert shell.user_ns["ctx_out"] == block(last, "ctx_w = 'stored'")


def test_cells_above_shows_what_was_typed(shell: InteractiveShell) -> None:
    magic = run(shell, "%time ctx_t = 3")
    assert cells_above(shell, 1) == block(magic, "%time ctx_t = 3")


def test_cells_above_cap(shell: InteractiveShell, log: ErrorLog) -> None:
    numbers = [run(shell, f"ctx_v{i} = '{'#' * 3000}'") for i in range(3)]
    text = cells_above(shell, 3, errors=log, max_chars=2000)
    assert len(text) <= 2000
    cuts = re.findall(r"… cut: ([\d,]+) characters of In \[(\d+)\]", text)
    assert [int(n) for _, n in cuts] == numbers
    assert sum(int(c.replace(",", "")) for c, _ in cuts) > 9000 - 2000
    assert text.count("```") % 2 == 0


def test_cells_above_skips_empty_cells_and_falls_back_to_In() -> None:
    """A shell without a history manager or display hook: ``In`` is read and its last entry is the running cell."""
    fake = types.SimpleNamespace(user_ns={"In": ["", "a = 1", "", "b = 2", "   ", "%openhands now"]})
    assert cells_above(fake, 2) == block(1, "a = 1") + "\n\n" + block(3, "b = 2")
    assert cells_above(fake, 5) == cells_above(fake, 2)


def test_cells_above_refuses_negative_count(shell: InteractiveShell) -> None:
    with pytest.raises(ValidationError) as excinfo:
        cells_above(shell, -1)
    assert one_line_error(excinfo) == "The number of cells above must be 0 or more, got -1."


def test_error_log_records_errors_with_their_cell(shell: InteractiveShell, log: ErrorLog) -> None:
    run(shell, "ctx_ok = 1")
    assert log.last is None
    failing = run(shell, "def ctx_f():\n    raise ValueError('bad\\nvalue')\nctx_f()")
    syntax = run(shell, "ctx_s = (")
    entry = log.for_cell(failing)
    assert entry is not None
    assert (entry.execution_count, entry.error_type, entry.message) == (failing, "ValueError", "bad value")
    assert entry.source == "def ctx_f():\n    raise ValueError('bad\\nvalue')\nctx_f()"
    assert entry.traceback.startswith("Traceback (most recent call last):")
    assert "in ctx_f" in entry.traceback and "interactiveshell" not in entry.traceback
    assert log.last is not None and log.last.execution_count == syntax and log.last.error_type == "SyntaxError"
    assert log.for_cell(failing, "something else") is None  # a reused number with other code is not a match

    log.install(shell)  # twice: still one hook
    run(shell, "ctx_1 = 1 / 0")
    assert [e.error_type for e in log.entries][-2:] == ["SyntaxError", "ZeroDivisionError"]
    log.uninstall(shell)
    log.uninstall(shell)
    run(shell, "ctx_2 = 1 / 0")
    assert len(log.entries) == 3


def test_error_log_keeps_the_last_20(shell: InteractiveShell, log: ErrorLog) -> None:
    numbers = [run(shell, f"raise KeyError({i})") for i in range(22)]
    assert [e.execution_count for e in log.entries] == numbers[-20:]


def test_last_error_task_with_error_log(shell: InteractiveShell, log: ErrorLog) -> None:
    failing = run(shell, "ctx_items = [1, 2]\nctx_items[5]")
    run(shell, "ctx_fine = True")
    run(shell, "ctx_task = ctx_mod.last_error_task(get_ipython(), ctx_log)")
    assert shell.user_ns["ctx_task"] == (
        "Fix the error raised by this notebook cell.\n\n"
        f"### The cell (In [{failing}])\n```python\nctx_items = [1, 2]\nctx_items[5]\n```\n\n"
        "### The error\n```text\n" + log.entries[-1].traceback + "\n```"
    )
    assert "IndexError: list index out of range" in shell.user_ns["ctx_task"]


def test_last_error_task_reads_the_error_log_first(shell: InteractiveShell, log: ErrorLog) -> None:
    failing = run(shell, "raise ValueError('\\x1b[31mcoloured\\x1b[0m message')")
    forget_last_exception()  # only the log knows about the error now
    task = last_error_task(shell, log)
    assert f"### The cell (In [{failing}])" in task
    assert task.endswith("ValueError: coloured message\n```")  # colour codes stripped
    with pytest.raises(ValidationError, match="No error to fix yet"):
        last_error_task(shell, None)


def test_last_error_task_without_error_log_finds_the_failing_cell(shell: InteractiveShell) -> None:
    failing = run(shell, "def ctx_g():\n    return {}['gone']\nctx_g()")
    run(shell, "ctx_fine = 2")
    run(shell, "ctx_task = ctx_mod.last_error_task(get_ipython(), None)")
    task = shell.user_ns["ctx_task"]
    assert task.startswith(
        "Fix the error raised by this notebook cell.\n\n"
        f"### The cell (In [{failing}])\n```python\ndef ctx_g():\n    return {{}}['gone']\nctx_g()\n```\n\n"
        "### The error\n```text\nTraceback (most recent call last):\n"
    )
    assert task.endswith("KeyError: 'gone'\n```")
    assert "interactiveshell" not in task and "\x1b[" not in task


def test_last_error_task_empty_log_falls_back_to_the_last_cell(shell: InteractiveShell) -> None:
    """An exception IPython recorded but whose code is no cell: the last cell run is the best guess."""
    last = run(shell, "ctx_h = 'before'")
    try:
        raise OSError("disk full")
    except OSError as error:
        sys.last_type, sys.last_value, sys.last_traceback = OSError, error, error.__traceback__
    task = last_error_task(shell, ErrorLog())
    assert f"### The cell (In [{last}])\n```python\nctx_h = 'before'\n```" in task
    assert task.endswith("OSError: disk full\n```")
    assert "test_context.py" in task


def test_last_error_task_keeps_the_last_60_lines(shell: InteractiveShell, log: ErrorLog) -> None:
    # two functions calling each other: Python folds only identical consecutive frames, so this traceback is long
    run(shell, "def ctx_p(n):\n    return ctx_q(n - 1)\ndef ctx_q(n):\n    return ctx_p(n) if n else 1 / 0\nctx_p(50)")
    task = last_error_task(shell, log)
    error = task.split("### The error\n```text\n", 1)[1].removesuffix("\n```")
    lines = error.split("\n")
    assert re.fullmatch(r"… \([\d,]+ earlier lines left out\)", lines[0])
    assert len(lines) == 61 and lines[-1] == "ZeroDivisionError: division by zero"


def test_last_error_task_without_any_error(shell: InteractiveShell) -> None:
    run(shell, "ctx_fine = 3")
    for errors in (None, ErrorLog()):
        with pytest.raises(ValidationError) as excinfo:
            last_error_task(shell, errors)
        assert one_line_error(excinfo) == ("No error to fix yet: run the cell that fails first, then `%openhands fix`.")


# --------------------------------------------------------------------------------------------------------------------
# compose


def test_compose_fits() -> None:
    assert compose("Do it.", [("Variables", "### x (int)"), ("Cells above", ""), ("Empty", "  \n")]) == (
        "Do it.\n\n---\n## Variables\n\n### x (int)"
    )
    assert compose("Do it.", []) == "Do it."


def test_compose_cuts_sections_not_the_message() -> None:
    message = "M" * 300
    sections = [("Variables", "v" * 2000), ("Cells above", "c" * 50)]
    text = compose(message, sections, max_chars=1000)
    assert len(text) <= 1000
    assert text.startswith(message + "\n\n---\n## Variables\n\n")
    assert "\n\n---\n## Cells above\n\n" + "c" * 50 + "\n\n" in text  # the short section stays whole
    note = re.search(r"\n\n\(Context cut: ([\d,]+) characters left out\.\)\Z", text)
    assert note is not None
    left_out = int(note[1].replace(",", ""))
    assert left_out == 2000 - text.split("## Variables", 1)[1].split("## Cells above", 1)[0].count("v")


def test_compose_message_longer_than_the_cap() -> None:
    message = "M" * 500
    text = compose(message, [("Variables", "v" * 100), ("Cells above", "c" * 20)], max_chars=200)
    assert text == message + "\n\n(Context cut: 120 characters left out.)"


# --------------------------------------------------------------------------------------------------------------------
# Redaction


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENHANDS_API_KEY", KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-" + "9" * 20)
    monkeypatch.setenv("SHORT_SECRET", "12345678")  # 8 characters: too short to redact safely
    monkeypatch.setenv("PLAIN_SETTING", "visible-value-123")  # not credential-like
    return KEY


def test_redact(env_key: str) -> None:
    assert context._redact(f"a {env_key} b tok-{'9' * 20} 12345678 visible-value-123") == (
        "a ******** b ******** 12345678 visible-value-123"
    )


def test_expand_redacts(env_key: str) -> None:
    import os

    namespace = {"env": dict(os.environ), "cfg": {"key": env_key}}
    assert expand("{{cfg['key']}}", namespace) == "********"
    assert expand("{{env['OPENHANDS_API_KEY']}}", namespace) == "********"
    with pytest.raises(ValidationError) as excinfo:
        expand("{{cfg[KEY]}}".replace("KEY", repr(env_key + "x")), namespace)
    assert env_key not in str(excinfo.value)


def test_describe_redacts_before_cutting(env_key: str) -> None:
    import os

    env = {name: os.environ[name] for name in ("OPENHANDS_API_KEY", "MY_SERVICE_TOKEN", "PLAIN_SETTING")}
    text = describe(["env"], {"env": env})
    assert env_key not in text and "9" * 20 not in text
    assert (
        "'OPENHANDS_API_KEY': '********', 'MY_SERVICE_TOKEN': '********', 'PLAIN_SETTING': 'visible-value-123'"
    ) in text
    # the key straddles the 500-character cut of the repr: redacted first, so not even its start shows
    text = describe(["blob"], {"blob": "x" * 480 + env_key})
    assert env_key[:5] not in text and "x" * 480 + "*" in text
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"c": ["y" * 30 + env_key]})
    text = describe(["df"], {"df": frame})
    assert env_key[:5] not in text and "y" * 30 + "********" in text


def test_cells_above_and_last_error_task_redact(shell: InteractiveShell, log: ErrorLog, env_key: str) -> None:
    run(shell, f"ctx_k = {env_key!r}\nraise ValueError(ctx_k)")
    for text in (cells_above(shell, 1, errors=log), last_error_task(shell, log)):
        assert env_key not in text
        assert "ctx_k = '********'" in text and "ValueError: ********" in text

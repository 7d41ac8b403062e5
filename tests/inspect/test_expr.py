"""The `math` tool's expression language (lens/inspect/expr.py): parsing, evaluation, errors, safety."""

from __future__ import annotations

import math

import pytest

from lens.inspect.expr import Expr, ExprError, parse_expr


def ev(text: str, values: dict[str, dict[str, float]] | None = None) -> float:
    return parse_expr(text).evaluate(values or {})


# --- arithmetic and precedence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2+3*4", 14.0),
        ("(2+3)*4", 20.0),
        ("2*3+4", 10.0),
        ("-2**2", -4.0),
        ("(-2)**2", 4.0),
        ("2**-1", 0.5),
        ("2**3**2", 512.0),  # right-associative
        ("10 - 4 - 3", 3.0),  # left-associative
        ("8 / 4 / 2", 1.0),
        ("7 / 2", 3.5),
        ("7 % 3 * 2", 2.0),
        ("-7 % 3", 2.0),  # Python modulo: sign of the divisor
        ("--3", 3.0),
        ("+-+3", -3.0),
        ("1 + 2 * 3 ** 2", 19.0),
        (".5 + 1.", 1.5),
        ("1e3 + 2.5E-1", 1000.25),
        ("  42  ", 42.0),
        ("true + true", 2.0),
        ("false", 0.0),
    ],
)
def test_arithmetic(text: str, expected: float) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", 1.0),
        ("2 < 1", 0.0),
        ("2 <= 2", 1.0),
        ("3 > 4", 0.0),
        ("4 >= 4", 1.0),
        ("0.5 == 1/2", 1.0),
        ("1 != 1", 0.0),
        ("1 + 1 == 2", 1.0),  # arithmetic binds tighter than comparison
        ("(1 < 2) < 3", 1.0),  # parenthesised comparison is fine
        ("1 and 0", 0.0),
        ("1 and 2", 1.0),
        ("0 or 0", 0.0),
        ("0 or 3", 1.0),
        ("not 0", 1.0),
        ("not 5", 0.0),
        ("not not 5", 1.0),
        ("1 && 0", 0.0),
        ("0 || 1", 1.0),
        ("!0", 1.0),
        ("!1 || !0 && 1", 1.0),
        ("1 or 0 and 0", 1.0),  # and binds tighter than or
        ("(1 or 0) and 0", 0.0),
        ("not 1 == 2", 1.0),  # not binds looser than comparison
        ("1 < 2 and 3 < 4", 1.0),
        ("1 < 2 and 4 < 3", 0.0),
        ("1 != 2", 1.0),
    ],
)
def test_comparisons_and_logic(text: str, expected: float) -> None:
    assert ev(text) == expected


def test_bang_spellings_parse_to_the_same_tree_as_words() -> None:
    assert parse_expr("!a && b || c").tree == parse_expr("not a and b or c").tree
    a, b, c = ("ref", "a", "value"), ("ref", "b", "value"), ("ref", "c", "value")
    assert parse_expr("!a && b || c").tree == ("bin", "or", ("bin", "and", ("un", "not", a), b), c)


def test_and_or_short_circuit_missing_values() -> None:
    # the right side is never read, so a missing value there is not an error
    assert ev("0 and ghost") == 0.0
    assert ev("1 or ghost") == 1.0
    with pytest.raises(ExprError, match=r"^'ghost\.value' has no value in this result$"):
        ev("1 and ghost")


# --- functions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abs(-3)", 3.0),
        ("abs(3 - 5) * 2", 4.0),
        ("min(3, 1, 2)", 1.0),
        ("max(3, 1, 2)", 3.0),
        ("min(2, -1) + max(-5, -6)", -6.0),
        ("sqrt(16)", 4.0),
        ("round(2.6)", 3.0),
        ("round(-2.4)", -2.0),
        ("max(1 < 2, 0)", 1.0),
        ("min(" + ", ".join(str(i) for i in range(64, 0, -1)) + ")", 1.0),
    ],
)
def test_functions(text: str, expected: float) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abs(1, 2)", "abs() takes 1 argument(s), got 2"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
        ("round(1, 2)", "round() takes 1 argument(s), got 2"),
        ("min(" + ",".join(["1"] * 65) + ")", "min() takes 1 to 64 argument(s), got 65"),
        ("max(" + ",".join(["1"] * 65) + ")", "max() takes 1 to 64 argument(s), got 65"),
        ("abs()", "expected a number, tool or '(' at column 5, found ')'"),
        ("min(1,)", "expected a number, tool or '(' at column 7, found ')'"),
        ("pow(2, 3)", "unknown function 'pow' at column 1 (known: abs, max, min, round, sqrt)"),
        ("1 + floor(2)", "unknown function 'floor' at column 5 (known: abs, max, min, round, sqrt)"),
        ("abs 1", "unexpected '1' at column 5"),
    ],
)
def test_function_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError) as info:
        parse_expr(text)
    assert str(info.value) == message


def test_sqrt_of_negative_is_an_expr_error() -> None:
    with pytest.raises(ExprError, match=r"^sqrt\(\): math domain error$"):
        ev("sqrt(0 - 1)")


# --- references -----------------------------------------------------------------------------------------


def test_bare_name_is_the_tool_value() -> None:
    assert parse_expr("parts").tree == ("ref", "parts", "value")
    assert parse_expr("parts.count").tree == ("ref", "parts", "count")
    assert parse_expr("parts . count").tree == ("ref", "parts", "count")
    assert parse_expr("parts").tree == parse_expr("parts.value").tree


def test_refs_in_order_of_appearance_without_duplicates() -> None:
    e = parse_expr("b.count + a + max(c.area, b.count) - a.value * (not d.x)")
    assert e.refs() == [("b", "count"), ("a", "value"), ("c", "area"), ("d", "x")]
    assert parse_expr("1 + 2").refs() == []
    assert parse_expr("-z").refs() == [("z", "value")]


def test_refs_keeps_different_measures_of_one_tool() -> None:
    assert parse_expr("t.min < t and t < t.max").refs() == [("t", "min"), ("t", "value"), ("t", "max")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a < 1", True),
        ("a == b", True),
        ("a != 1", True),
        ("a >= 1", True),
        ("a and b", True),
        ("a && b", True),
        ("a or b", True),
        ("not a", True),
        ("!a", True),
        ("(a < 1)", True),
        ("a < 1 and b > 2", True),
        ("a", False),
        ("a + 1", False),
        ("-a", False),
        ("true", False),
        ("1", False),
        ("max(a < 1, 0)", False),
        ("(a < 1) + 0", False),
    ],
)
def test_is_boolean(text: str, expected: bool) -> None:
    assert parse_expr(text).is_boolean is expected


# --- evaluation ------------------------------------------------------------------------------------------


def test_evaluate_with_values() -> None:
    e = parse_expr("parts.count * 2 <= 10 and abs(brightness.value - 100) < 20")
    assert e.evaluate({"parts": {"count": 4}, "brightness": {"value": 110.0}}) == 1.0
    assert e.evaluate({"parts": {"count": 6}, "brightness": {"value": 110.0}}) == 0.0
    assert e.evaluate({"parts": {"count": 4}, "brightness": {"value": 79.5}}) == 0.0


def test_evaluate_arithmetic_over_values() -> None:
    values = {"parts": {"value": 3, "total_area": 1200.0}, "b": {"value": 0.25}}
    assert parse_expr("parts / 4").evaluate(values) == 0.75
    assert parse_expr("parts.total_area / parts + b").evaluate(values) == 400.25
    assert isinstance(parse_expr("parts").evaluate(values), float)


def test_expr_is_reusable_and_keeps_its_text() -> None:
    e = parse_expr("x * 2")
    assert isinstance(e, Expr)
    assert e.text == "x * 2"
    assert [e.evaluate({"x": {"value": v}}) for v in (1, 2.5, -3)] == [2.0, 5.0, -6.0]


@pytest.mark.parametrize("text", ["1 / 0", "1 % 0", "a / (b - b)", "a % b"])
def test_division_by_zero(text: str) -> None:
    with pytest.raises(ExprError, match=r"^division by zero$"):
        ev(text, {"a": {"value": 5}, "b": {"value": 0}})


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("ghost + 1", {}, "'ghost.value' has no value in this result"),
        ("t.count", {"t": {"value": 1}}, "'t.count' has no value in this result"),
        ("t", {"t": {"count": 1}}, "'t.value' has no value in this result"),
        ("a.__class__", {"a": {"value": 1}}, "'a.__class__' has no value in this result"),
    ],
)
def test_missing_value(text: str, values: dict[str, dict[str, float]], message: str) -> None:
    with pytest.raises(ExprError) as info:
        ev(text, values)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("1e308 * 10", {}, "result is inf"),
        ("0 - 1e308 * 10", {}, "result is -inf"),
        ("1e400", {}, "result is inf"),
        ("a", {"a": {"value": math.nan}}, "result is nan"),
        ("a - a", {"a": {"value": math.inf}}, "result is nan"),
        ("sqrt(a)", {"a": {"value": math.inf}}, "result is inf"),
        ("10 ** 400", {}, "overflow in '**'"),
    ],
)
def test_non_finite_result(text: str, values: dict[str, dict[str, float]], message: str) -> None:
    with pytest.raises(ExprError) as info:
        ev(text, values)
    assert str(info.value) == message


# --- syntax errors, with columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 + * 2", "expected a number, tool or '(' at column 5, found '*'"),
        ("1 +", "expected a number, tool or '(' at column 4, found end of expression"),
        ("1 +   ", "expected a number, tool or '(' at column 4, found end of expression"),
        ("(1 + 2", "expected ')' at column 7, found end of expression"),
        ("1 2", "unexpected '2' at column 3"),
        ("(1) (2)", "unexpected '(' at column 5"),
        ("a.", "expected a measure name after 'a.' at column 3"),
        ("a.1", "unexpected '.1' at column 2"),  # '.1' is a number token
        ("a.and", "expected a measure name after 'a.' at column 3"),
        ("a.b.c", "unexpected '.' at column 4"),
        ("not", "expected a number, tool or '(' at column 4, found end of expression"),
        ("and 1", "unexpected 'and' at column 1"),
        ("1 <> 2", "expected a number, tool or '(' at column 4, found '>'"),
        ("a; b", "unexpected character ';' at column 2"),
        ("0x10", "unexpected 'x10' at column 2"),
        ("", "empty expression"),
        ("   ", "empty expression"),
    ],
)
def test_syntax_error_message(text: str, message: str) -> None:
    with pytest.raises(ExprError) as info:
        parse_expr(text)
    assert str(info.value) == message


def test_syntax_error_reports_column() -> None:
    with pytest.raises(ExprError, match="column 5"):
        parse_expr("1 + * 2")


@pytest.mark.parametrize(
    ("text", "column"),
    [("1 < 2 < 3", 7), ("1 == 2 != 3", 8), ("a <= b >= c", 8), ("1 > 0 == 1", 7)],
)
def test_chained_comparison_rejected(text: str, column: int) -> None:
    with pytest.raises(ExprError, match=rf"^chained comparison at column {column}: use 'and'$"):
        parse_expr(text)


# --- safety: nothing but the language is accepted ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('x')", 'unexpected character "\'" at column 12'),
        ("__import__", None),  # a bare name is only a tool reference; see test_dunder_names_are_inert
        ("open('f')", 'unexpected character "\'" at column 6'),
        ("open(f)", "unknown function 'open' at column 1 (known: abs, max, min, round, sqrt)"),
        ("eval(x)", "unknown function 'eval' at column 1 (known: abs, max, min, round, sqrt)"),
        ("getattr(a, b)", "unknown function 'getattr' at column 1 (known: abs, max, min, round, sqrt)"),
        ("lambda: 1", "unexpected character ':' at column 7"),
        ("[1]", "unexpected character '[' at column 1"),
        ("a[0]", "unexpected character '[' at column 2"),
        ('"str"', "unexpected character '\"' at column 1"),
        ("'str'", 'unexpected character "\'" at column 1'),
        ("{}", "unexpected character '{' at column 1"),
        ("a.__class__.__bases__", "unexpected '.' at column 12"),
        ("a.__class__()", "unexpected '(' at column 12"),
        ("1 if 1 else 0", "unexpected 'if' at column 3"),
        ("a@b", "unexpected character '@' at column 2"),
        ("1_000", "unexpected '_000' at column 2"),
        ("x:=1", "unexpected character ':' at column 2"),
    ],
)
def test_unsafe_input_is_rejected_at_parse_time(text: str, message: str | None) -> None:
    if message is None:
        assert parse_expr(text).tree == ("ref", text, "value")
        return
    with pytest.raises(ExprError) as info:
        parse_expr(text)
    assert str(info.value) == message


def test_dunder_names_are_inert() -> None:
    # `a.__class__` parses as a measure *name*: evaluation is a mapping lookup, never getattr, and the
    # config validator rejects measures a tool does not publish (tests/config/test_validate.py).
    e = parse_expr("a.__class__")
    assert e.tree == ("ref", "a", "__class__")
    assert e.refs() == [("a", "__class__")]
    assert e.evaluate({"a": {"__class__": 7}}) == 7.0
    with pytest.raises(ExprError, match=r"^'a\.__class__' has no value in this result$"):
        e.evaluate({"a": {"value": 1}})


def test_expr_error_is_a_value_error() -> None:
    assert issubclass(ExprError, ValueError)


# --- once bugs, now fixed ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["min(3)", "max(3)"])
def test_min_max_of_one_argument(text: str) -> None:
    assert ev(text) == 3.0


def test_negative_base_fractional_power_is_an_expr_error() -> None:
    with pytest.raises(ExprError):
        ev("(0 - 8) ** 0.5")


def test_zero_to_negative_power_is_an_expr_error() -> None:
    with pytest.raises(ExprError):
        ev("0 ** -1")


def test_round_of_infinity_is_an_expr_error() -> None:
    with pytest.raises(ExprError):
        ev("round(1e308 * 10)")


@pytest.mark.parametrize(("text", "column"), [("1 + $", 5), ("x = 1", 3), ("  $", 3)])
def test_bad_character_column_skips_whitespace(text: str, column: int) -> None:
    with pytest.raises(ExprError, match=rf"at column {column}$"):
        parse_expr(text)


@pytest.mark.parametrize(("text", "column"), [("1 ! 2", 3), ("&& 1", 1), ("1 || || 2", 6)])
def test_symbolic_operator_error_column(text: str, column: int) -> None:
    with pytest.raises(ExprError, match=rf"at column {column}$"):
        parse_expr(text)

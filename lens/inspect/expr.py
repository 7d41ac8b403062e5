"""A small, safe expression language for the `math` tool (never `eval`).

    parts.count * 2 <= 10 and abs(brightness.value - 100) < 20

Numbers, tool references (`tool` = `tool.value`, or `tool.measure`), + - * / % **, comparisons,
and/or/not (also && || !), parentheses, and the functions abs, min, max, sqrt, round.
Parsing happens once at config validation; evaluation walks a tuple tree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Node = tuple  # ("num", v) | ("ref", tool, measure) | ("un", op, a) | ("bin", op, a, b) | ("call", f, args)


class ExprError(ValueError):
    """A bad expression (at parse time) or a value that cannot be computed (at run time)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|<=|>=|==|!=|&&|\|\||[-+*/%<>()!,.]))"
)
_FUNCS: dict[str, tuple[int, int, Callable[..., float]]] = {
    "abs": (1, 1, abs),
    "sqrt": (1, 1, math.sqrt),
    "round": (1, 1, round),
    "min": (1, 64, lambda *a: min(a)),
    "max": (1, 64, lambda *a: max(a)),
}
_KEYWORDS = {"and", "or", "not", "true", "false"}
_CMP = {"<", "<=", ">", ">=", "==", "!="}


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = len(text) - len(text[pos:].lstrip())
            raise ExprError(f"unexpected character {text[bad]!r} at column {bad + 1}")
        kind = m.lastgroup or ""
        val = m.group(kind)
        col = m.start(kind) + 1
        if kind == "op" and val in ("&&", "||", "!"):
            val, kind = {"&&": "and", "||": "or", "!": "not"}[val], "name"
        out.append((kind, val, col))
        pos = m.end()
    out.append(("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self, val: str | None = None) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if val is not None and tok[1] != val:
            found = "end of expression" if tok[0] == "end" else repr(tok[1])
            raise ExprError(f"expected {val!r} at column {tok[2]}, found {found}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_()
        kind, val, col = self.peek()
        if kind != "end":
            raise ExprError(f"unexpected {val!r} at column {col}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek()[1] == "or":
            self.take()
            node = ("bin", "or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.peek()[1] == "and":
            self.take()
            node = ("bin", "and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.peek()[1] == "not":
            self.take()
            return ("un", "not", self.not_())
        return self.cmp()

    def cmp(self) -> Node:
        node = self.add()
        if self.peek()[0] == "op" and self.peek()[1] in _CMP:
            op = self.take()[1]
            node = ("bin", op, node, self.add())
            if self.peek()[1] in _CMP:
                raise ExprError(f"chained comparison at column {self.peek()[2]}: use 'and'")
        return node

    def add(self) -> Node:
        node = self.mul()
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            op = self.take()[1]
            node = ("bin", op, node, self.mul())
        return node

    def mul(self) -> Node:
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "%"):
            op = self.take()[1]
            node = ("bin", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek()[0] == "op" and self.peek()[1] in "+-":
            op = self.take()[1]
            return ("un", op, self.unary())
        node = self.atom()
        if self.peek()[1] == "**":
            self.take()
            node = ("bin", "**", node, self.unary())
        return node

    def atom(self) -> Node:
        kind, val, col = self.take()
        if kind == "num":
            return ("num", float(val))
        if kind == "op" and val == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "name":
            if val in ("true", "false"):
                return ("num", 1.0 if val == "true" else 0.0)
            if val in _KEYWORDS:
                raise ExprError(f"unexpected {val!r} at column {col}")
            if self.peek()[1] == "(":
                return self.call(val, col)
            measure = "value"
            if self.peek()[1] == ".":
                self.take()
                mkind, measure, mcol = self.take()
                if mkind != "name" or measure in _KEYWORDS:
                    raise ExprError(f"expected a measure name after '{val}.' at column {mcol}")
            return ("ref", val, measure)
        found = "end of expression" if kind == "end" else repr(val)
        raise ExprError(f"expected a number, tool or '(' at column {col}, found {found}")

    def call(self, name: str, col: int) -> Node:
        if name not in _FUNCS:
            raise ExprError(f"unknown function '{name}' at column {col} (known: {', '.join(sorted(_FUNCS))})")
        self.take("(")
        args = [self.or_()]
        while self.peek()[1] == ",":
            self.take()
            args.append(self.or_())
        self.take(")")
        lo, hi, _ = _FUNCS[name]
        if not lo <= len(args) <= hi:
            raise ExprError(
                f"{name}() takes {lo if lo == hi else f'{lo} to {hi}'} argument(s), got {len(args)}"
            )
        return ("call", name, tuple(args))


def _collect_refs(node: Node, out: list[tuple[str, str]]) -> None:
    tag = node[0]
    if tag == "ref":
        if (node[1], node[2]) not in out:
            out.append((node[1], node[2]))
    elif tag == "un":
        _collect_refs(node[2], out)
    elif tag == "bin":
        _collect_refs(node[2], out)
        _collect_refs(node[3], out)
    elif tag == "call":
        for arg in node[2]:
            _collect_refs(arg, out)


def _eval(node: Node, values: Mapping[str, Mapping[str, float]]) -> float:
    tag = node[0]
    if tag == "num":
        return node[1]
    if tag == "ref":
        tool = values.get(node[1])
        if tool is None or node[2] not in tool:
            raise ExprError(f"'{node[1]}.{node[2]}' has no value in this result")
        return float(tool[node[2]])
    if tag == "un":
        a = _eval(node[2], values)
        return float(not a) if node[1] == "not" else (-a if node[1] == "-" else a)
    if tag == "call":
        fn = _FUNCS[node[1]][2]
        try:
            return _real(fn(*[_eval(a, values) for a in node[2]]), f"{node[1]}()")
        except (ValueError, OverflowError, TypeError) as e:
            raise ExprError(f"{node[1]}(): {e}") from None
    op = node[1]
    if op == "and":
        return float(bool(_eval(node[2], values)) and bool(_eval(node[3], values)))
    if op == "or":
        return float(bool(_eval(node[2], values)) or bool(_eval(node[3], values)))
    a, b = _eval(node[2], values), _eval(node[3], values)
    if op in ("/", "%") and b == 0:
        raise ExprError("division by zero")
    try:
        return _real(_BINOPS[op](a, b), f"'{op}'")
    except OverflowError:
        raise ExprError(f"overflow in '{op}'") from None
    except (ZeroDivisionError, TypeError) as e:
        raise ExprError(f"cannot compute '{op}': {e}") from None


def _real(x: object, what: str) -> float:
    if isinstance(x, complex):
        raise ExprError(f"{what} has no real result")
    return float(x)  # type: ignore[arg-type]


_BINOPS: dict[str, Callable[[float, float], float | bool]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
    "**": lambda a, b: a**b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Expr:
    text: str
    tree: Node

    def refs(self) -> list[tuple[str, str]]:
        """(tool, measure) pairs the expression reads, in order of appearance."""
        out: list[tuple[str, str]] = []
        _collect_refs(self.tree, out)
        return out

    @property
    def is_boolean(self) -> bool:
        """True when the expression is a test (comparison or logic): its truth is the tool's pass."""
        t = self.tree
        return (t[0] == "bin" and t[1] in _CMP | {"and", "or"}) or (t[0] == "un" and t[1] == "not")

    def evaluate(self, values: Mapping[str, Mapping[str, float]]) -> float:
        result = _eval(self.tree, values)
        if math.isnan(result) or math.isinf(result):
            raise ExprError(f"result is {result}")
        return result


def parse_expr(text: str) -> Expr:
    """Parse an expression; raises ExprError with the column of the first problem."""
    if not text.strip():
        raise ExprError("empty expression")
    return Expr(text, _Parser(text).parse())

"""Custom masks from a tiny rule language (``k <= q and q - k < 3``), interpreted over an AST whitelist.

Nothing is ever passed to ``eval``: the rule is parsed with :mod:`ast`, every node is
checked against a whitelist, and size limits bound both the text and the tree.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np

from attnviz.masks.builders import grid

MAX_RULE_CHARS = 200
MAX_RULE_NODES = 80


class MaskRuleError(ValueError):
    """A custom rule is not valid in the mask rule language; the message says why."""


_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.FloorDiv: np.floor_divide, ast.Mod: np.mod,
}  # fmt: skip
_COMPARE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}  # fmt: skip
_FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "abs": (1, np.abs), "min": (2, np.minimum), "max": (2, np.maximum),
}  # fmt: skip
RULE_HELP = (
    "Variables q (query position), k (key position), n (length); integers; + - * // %; "
    "< <= > >= == !=; and, or, not; abs(x), min(a, b), max(a, b). Example: k <= q and q - k < 3"
)


def _is_bool(value: np.ndarray) -> bool:
    return np.asarray(value).dtype == bool


def _evaluate(node: ast.AST, names: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate one whitelisted node; anything else is refused with a readable message."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, names)
    if isinstance(node, ast.Constant) and type(node.value) in (int, bool):
        return np.asarray(node.value)
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise MaskRuleError(f"Unknown name '{node.id}': use q, k or n.")
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return np.logical_not(_as_bool(_evaluate(node.operand, names)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _as_int(_evaluate(node.operand, names))
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _as_int(_evaluate(node.left, names)), _as_int(_evaluate(node.right, names))
        if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and np.any(right == 0):
            raise MaskRuleError("Division or modulo by zero in the rule.")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        values = [_as_bool(_evaluate(value, names)) for value in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = values[0]
        for value in values[1:]:
            result = combine(result, value)
        return result
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _as_int(_evaluate(node.left, names))
        result = np.asarray(True)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _as_int(_evaluate(comparator, names))
            result = result & _COMPARE[type(op)](left, right)
            left = right
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        arity, function = _FUNCTIONS[node.func.id]
        if node.keywords or len(node.args) != arity:
            raise MaskRuleError(f"{node.func.id}() takes {arity} argument(s).")
        return function(*(_as_int(_evaluate(arg, names)) for arg in node.args))
    raise MaskRuleError(f"Not allowed in a mask rule: '{ast.unparse(node)}'. {RULE_HELP}")


def _as_int(value: np.ndarray) -> np.ndarray:
    if _is_bool(value):
        raise MaskRuleError("A comparison was used where a number is expected (e.g. '(q > k) + 1').")
    return value


def _as_bool(value: np.ndarray) -> np.ndarray:
    if not _is_bool(value):
        raise MaskRuleError("and / or / not need comparisons on both sides (e.g. 'k <= q and q - k < 3').")
    return value


def from_rule(n: int, rule: str) -> np.ndarray:
    """[n, n] mask where ``rule`` (see RULE_HELP) is true; user text is parsed, never executed."""
    text = rule.strip()
    if not text:
        raise MaskRuleError("The rule is empty. " + RULE_HELP)
    if len(text) > MAX_RULE_CHARS:
        raise MaskRuleError(f"The rule is longer than {MAX_RULE_CHARS} characters.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise MaskRuleError(f"The rule is not a valid expression ({error.msg}). {RULE_HELP}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_RULE_NODES:
        raise MaskRuleError(f"The rule has more than {MAX_RULE_NODES} parts; keep it short.")
    q, k = grid(n)
    result = _evaluate(tree, {"q": q, "k": k, "n": np.asarray(n)})
    if not _is_bool(result):
        raise MaskRuleError("The rule must be a condition (a comparison), e.g. 'k <= q'.")
    return np.broadcast_to(result, (n, n)).copy()



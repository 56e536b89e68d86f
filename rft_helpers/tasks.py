"""The generated tasks: each question comes with its worked reference solution, one step per line, and its
answer. The reference is the one correct process (column addition, a chain left to right, one equation), so a
sample's steps can be checked against it (steps.step_truth).
"""

from __future__ import annotations

import random

from .config import TaskConfig
from .records import question_record

ANSWER_PREFIX = "Answer: "


def addition_problem(rng: random.Random, digits: int) -> tuple[str, str, str]:
    """A question like '59+63=?', its column-by-column solution and its answer.

    One line per column, right to left, with the carry written out ('9+3=12', then '5+6+1=12'), then the answer:
    each line needs two digits of the question, the carry from the line above and one addition fact.
    """
    low, high = 10 ** (digits - 1), 10**digits - 1
    a, b = rng.randint(low, high), rng.randint(low, high)
    lines, carry = [], 0
    for x, y in zip(reversed(str(a)), reversed(str(b))):
        total = int(x) + int(y) + carry
        lines.append(f"{x}+{y}{f'+{carry}' if carry else ''}={total}")
        carry = total // 10
    return f"{a}+{b}=?", "\n".join(lines) + f"\n{ANSWER_PREFIX}{a + b}", str(a + b)


_WORDED = {
    "+": ("What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}."),
    "-": ("What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}."),
    "*": ("What is {a} x {b}?", "What is {a} times {b}?", "Multiply {a} by {b}."),
}


def word_arithmetic_problem(rng: random.Random, digits: int, long_share: float = 0.5) -> tuple[str, str, str]:
    """A question in plain English ('What is 512 minus 96?'), a short worked answer and the number.

    Sums and differences pair two two-digit numbers, or (with probability `long_share`) a `digits`-digit number
    and a two-digit one, in either order (differences stay non-negative); products multiply a two-digit number by
    a one-digit one.
    """
    op = rng.choice(list(_WORDED))
    if op == "*":
        a, b = rng.randint(10, 99), rng.randint(2, 9)
    else:
        long = digits > 2 and rng.random() < long_share
        a, b = rng.randint(10 ** (digits - 1), 10**digits - 1) if long else rng.randint(10, 99), rng.randint(10, 99)
        if op == "-" and b > a or op == "+" and rng.random() < 0.5:
            a, b = b, a
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    question = rng.choice(_WORDED[op]).format(a=a, b=b)
    return question, f"{a} {op} {b} = {result}\nThe answer is {result}.", str(result)


def problem_kind(solution: str) -> str:
    """'+ 3-digit', '- 2-digit', 'x 1-digit': the operation and the longest operand, for per-kind accuracy."""
    a, op, b = solution.split("\n")[0].split(" ")[:3]
    return f"{'x' if op == '*' else op} {len(b) if op == '*' else max(len(a), len(b))}-digit"


_OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def chain_problem(rng: random.Random, config: TaskConfig) -> tuple[str, str, str]:
    """A chain like '7+5*3-4=?' evaluated left to right, one line per operation ('7+5=12', '12*3=36', '36-4=32')
    and the answer. Every intermediate value stays in 0..max_value (else the chain is drawn again), so each line
    is one small fact; unlike column addition, the answer can be guessed from the question without the lines,
    which is where an outcome reward alone keeps wrong reasoning."""
    while True:
        value = rng.randint(1, config.max_operand)
        question, lines = str(value), []
        for _ in range(rng.randint(config.min_ops, config.max_ops)):
            op, operand = rng.choice(list(_OPERATIONS)), rng.randint(1, config.max_operand)
            result = _OPERATIONS[op](value, operand)
            if not 0 <= result <= config.max_value:
                break
            question += f"{op}{operand}"
            lines.append(f"{value}{op}{operand}={result}")
            value = result
        else:
            return f"{question}=?", "\n".join(lines) + f"\n{ANSWER_PREFIX}{value}", str(value)


def task_row(config: TaskConfig, rng: random.Random, row_id: str) -> dict:
    """One generated question (+ its kind for word_arithmetic)."""
    if config.name == "addition":
        question, solution, answer = addition_problem(rng, config.digits)
        return question_record(row_id, question, answer, solution)
    if config.name == "chain":
        question, solution, answer = chain_problem(rng, config)
        return question_record(row_id, question, answer, solution)
    question, solution, answer = word_arithmetic_problem(rng, config.digits, config.long_operand_share)
    return question_record(row_id, question, answer, solution, kind=problem_kind(solution))

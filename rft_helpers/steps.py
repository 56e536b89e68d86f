"""Steps: a completion split at a separator, the unit a process reward model scores and a process check judges.

The separator is a setting (`prm.step_separator`): a newline for the arithmetic tasks (one line per step), a blank
line for MATH-style solutions, as search-and-learn splits them. Every PRM, the filter, the report and the search
use `split_steps`, so they all see the same steps.

For the generated tasks the reference solution is the one correct process, so `step_truth` can say which steps
of a sample are right: used to measure (kept samples, test answers, a PRM and its labels), never to train or filter.
"""

from __future__ import annotations

DEFAULT_SEPARATOR = "\n"


def split_steps(text: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    """The non-empty steps of `text`, without surrounding whitespace.

    >>> split_steps("9+3=12\\n5+6+1=12\\nAnswer: 122")
    ['9+3=12', '5+6+1=12', 'Answer: 122']
    """
    return [step.strip() for step in text.split(separator) if step.strip()]


def join_steps(steps: list[str], separator: str = DEFAULT_SEPARATOR) -> str:
    return separator.join(steps)


def normalise_step(step: str) -> str:
    """A step with its whitespace collapsed: what makes two steps the same (same_step, step_key)."""
    return " ".join(step.split())


def same_step(a: str, b: str) -> bool:
    """The same step, whitespace aside."""
    return normalise_step(a) == normalise_step(b)


def step_key(question_id: str, steps: list[str]) -> tuple[str, ...]:
    """A node of a question's tree of steps: the question and its first steps, whitespace aside (same_step)."""
    return (question_id, *(normalise_step(step) for step in steps))


def step_truth(steps: list[str], reference_steps: list[str]) -> list[bool]:
    """Whether each step is the reference's step at the same place (whitespace aside); steps past the reference's
    end are wrong.

    >>> step_truth(["9+3=12", "5+6+1=11", "Answer: 112"], ["9+3=12", "5+6+1=12", "Answer: 122"])
    [True, False, False]
    """
    return [i < len(reference_steps) and same_step(step, reference_steps[i])
            for i, step in enumerate(steps)]


def process_correct(steps: list[str], reference_steps: list[str]) -> bool:
    """Every step right and none missing: the whole process is the reference's."""
    return len(steps) == len(reference_steps) and all(step_truth(steps, reference_steps))

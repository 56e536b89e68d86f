"""Answers that vote together: equivalent forms (`1/2`, `0.5`, `\\frac{1}{2}`) are one group, found by the answer
checker in one batch for all questions. Majority voting counts each group's answers; weighted best-of-N sums
each group's scores (search-and-learn's `find_answer_with_largest_sum`, with the checker in place of sympy)."""

from __future__ import annotations

from collections import Counter

from .equivalence import are_equivalent


def answer_groups(answer_lists: list[list[str | None]]) -> list[list[int | None]]:
    """Per question, each answer's group: equivalent answers share a number (0, 1, ... in first-seen order);
    None answers are in no group."""
    distinct = [list(dict.fromkeys(a for a in answers if a is not None)) for answers in answer_lists]
    pairs = [(a, b) for forms in distinct for i, a in enumerate(forms) for b in forms[i + 1:]]
    same = set(p for p, equal in zip(pairs, are_equivalent([a for a, _ in pairs], [b for _, b in pairs])) if equal)
    groups_per_question = []
    for answers, forms in zip(answer_lists, distinct):
        group_of: dict[str, int] = {}
        for form in forms:  # first-seen order: a form joins the group of the first earlier form it equals
            match = next((group_of[seen] for seen in group_of if (seen, form) in same), None)
            group_of[form] = len(set(group_of.values())) if match is None else match
        groups_per_question.append([None if a is None else group_of[a] for a in answers])
    return groups_per_question


def heaviest_groups(answer_lists: list[list[str | None]], weights: list[list[float]]) -> list[int | None]:
    """Per question, the index of the answer to give: the group with the largest total weight wins (ties: the
    group seen first), and within it the most common form, first seen. None when no answer has a group."""
    chosen = []
    for answers, groups, question_weights in zip(answer_lists, answer_groups(answer_lists), weights):
        totals: dict[int, float] = {}
        for group, weight in zip(groups, question_weights):
            if group is not None:
                totals[group] = totals.get(group, 0.0) + weight
        if not totals:
            chosen.append(None)
            continue
        best = max(totals, key=lambda g: (totals[g], -g))
        forms = Counter(a for a, g in zip(answers, groups) if g == best)
        form = max(forms, key=lambda f: (forms[f], -answers.index(f)))
        chosen.append(answers.index(form))
    return chosen


def majority_votes(answer_lists: list[list[str | None]]) -> list[str | None]:
    """Per question, the most common extracted answer, equivalent forms voting together; ties go to the group
    seen first; None answers do not vote."""
    winners = heaviest_groups(answer_lists, [[1.0] * len(answers) for answers in answer_lists])
    return [None if index is None else answers[index] for answers, index in zip(answer_lists, winners)]

"""Monte Carlo tree search over steps (PUCT, as rStar-Math; values as ReST-MCTS*), batched over questions.

A node is an answer begun, one step longer than its parent. Each simulation, every question's tree selects one
leaf by PUCT (Q + c_puct * P * sqrt(N_parent) / (1 + N_child), priors 1/width); all selected leaves are expanded
`mcts_width` ways in one engine call; each new node gets a value and the values are backed up to the root:
- `prm`: the PRM's aggregated score of the node's steps;
- `rollout`: one sampled rollout from the node to the end of the answer, judged by the outcome reward (1 or 0);
  training data only, where the reference answer is known (rStar-Math's terminal rewards);
- `both`: their mean.
A finished node's value is its outcome where known, else the PRM's. A finished leaf selected again backs up its
value again. A tree that finished no answer completes its most visited path at the end. Solutions are the
finished nodes and, with rollouts, the rollouts; the answer is the finished node with the highest mean value.
What the tree knows comes out too (`info`): each solution path's per-step values (backed-up means, as PRM
labels) and step-level preference pairs (siblings whose values differ by 0.5 or more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..steps import split_steps
from .base import Candidate, SearchResult, StepSearch

PAIR_MARGIN = 0.5  # rStar-Math keeps step pairs whose Q-values differ by at least this


@dataclass(eq=False)
class Node:
    candidate: Candidate
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)
    prior: float = 1.0
    visits: int = 0
    value_sum: float = 0.0

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def path(self) -> list["Node"]:
        """Root's first child to this node."""
        nodes, node = [], self
        while node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


def puct(parent: Node, child: Node, c_puct: float) -> float:
    return child.q + c_puct * child.prior * math.sqrt(parent.visits) / (1 + child.visits)


def select(root: Node, c_puct: float) -> Node:
    """Down from the root by PUCT (the first of equals) to a leaf."""
    node = root
    while node.children:
        node = max(node.children, key=lambda child: puct(node, child, c_puct))
    return node


def backup(node: Node, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


def mcts(search: StepSearch) -> list[SearchResult]:
    settings = search.settings
    mode = settings.mcts_value if search.outcome is not None else "prm"  # no reference answer: the PRM alone
    roots = [Node(Candidate(q)) for q in range(len(search.prompts))]
    rollouts: list[list[Candidate]] = [[] for _ in roots]
    for _ in range(settings.mcts_simulations):
        leaves = [select(root, settings.mcts_c_puct) for root in roots]
        for leaf in leaves:
            if leaf.candidate.finished:
                backup(leaf, leaf.q)
        growing = [leaf for leaf in leaves if not leaf.candidate.finished]
        if not growing:
            break
        deep = [leaf for leaf in growing if len(leaf.path()) >= settings.max_steps]
        shallow = [leaf for leaf in growing if len(leaf.path()) < settings.max_steps]
        children = []
        for leaves_at, to_end in ((shallow, False), (deep, True)):  # after max_steps: to the end of the answer
            for leaf, kids in zip(leaves_at, search.expand([leaf.candidate for leaf in leaves_at], settings.mcts_width,
                                                           to_end=to_end) if leaves_at else []):
                leaf.children = [Node(c, parent=leaf, prior=1.0 / settings.mcts_width) for c in kids]
                children.extend(leaf.children)
        values = node_values(search, children, mode, rollouts)
        for child, value in zip(children, values):
            backup(child, value)
    finish_most_visited(search, [root for root in roots if not any(n.candidate.finished for n in walk(root))])
    results = []
    for root, extra in zip(roots, rollouts):
        finished = [node for node in walk(root) if node.candidate.finished]
        solutions = [node.candidate for node in finished] + dedupe(extra, finished)
        chosen = max(range(len(finished)), key=lambda i: (finished[i].q, -i)) if finished else None
        if chosen is None and solutions:
            chosen = search.best(solutions)
        results.append(search.result(solutions, chosen, tree_knowledge(root, settings.separator)))
    return results


def finish_most_visited(search: StepSearch, roots: list[Node]) -> None:
    """A tree that found no finished answer in its simulations: its most visited path, completed in one call
    (the completion joins the tree as a finished node with the PRM's value, or its outcome where known)."""
    leaves = []
    for root in roots:
        node = root
        while node.children:
            node = max(node.children, key=lambda child: (child.visits, child.q))
        leaves.append(node)
    leaves = [leaf for leaf in leaves if not leaf.candidate.finished]
    ends = search.expand([leaf.candidate for leaf in leaves], 1, to_end=True) if leaves else []
    children = [Node(kids[0], parent=leaf, prior=1.0) for leaf, kids in zip(leaves, ends)]
    search.score([child.candidate for child in children])
    values = outcomes_or([child.candidate for child in children],
                         [max(search.value(child.candidate), 0.0) for child in children], search)
    for leaf, child, value in zip(leaves, children, values):
        leaf.children = [child]
        backup(child, value)


def node_values(search: StepSearch, nodes: list[Node], mode: str, rollouts: list[list[Candidate]]) -> list[float]:
    """Each new node's value (see the module's docstring); rollouts are kept in `rollouts` as solutions. The
    rollouts and the outcomes are judged in one call each."""
    candidates = [node.candidate for node in nodes]
    prm_values = None
    if mode in ("prm", "both") or search.outcome is None:
        search.score(candidates)
        prm_values = [max(search.value(c), 0.0) for c in candidates]
    if mode == "prm":
        return outcomes_or(candidates, prm_values, search)
    open_ = [c for c in candidates if not c.finished]
    ends = {id(c): kids[0] for c, kids in zip(open_, search.expand(open_, 1, to_end=True))}
    finals = [ends.get(id(c), c) for c in candidates]
    for candidate, end in zip(candidates, finals):
        if end is not candidate:
            rollouts[candidate.question].append(end)
    reached = search.reached(finals)
    return [value if mode == "rollout" or candidate.finished else (value + prm_values[i]) / 2
            for i, (candidate, value) in enumerate(zip(candidates, reached))]


def outcomes_or(candidates: list[Candidate], values: list[float], search: StepSearch) -> list[float]:
    """Each finished candidate's outcome where the reference is known, else its value from `values`."""
    if search.outcome is None:
        return values
    finished = [c for c in candidates if c.finished]
    reached = dict(zip(map(id, finished), search.reached(finished)))
    return [reached.get(id(c), value) for c, value in zip(candidates, values)]


def walk(root: Node):
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def dedupe(extra: list[Candidate], finished: list[Node]) -> list[Candidate]:
    seen = {node.candidate.text for node in finished}
    kept = []
    for candidate in extra:
        if candidate.text not in seen:
            seen.add(candidate.text)
            kept.append(candidate)
    return kept


def tree_knowledge(root: Node, separator: str) -> dict:
    """Per finished path, its steps and each step's backed-up value (PRM labels: a node's value for every step
    its text added); and step pairs between siblings whose values differ by PAIR_MARGIN or more (the prefix, the
    better continuation and the worse one)."""
    paths = []
    for leaf in walk(root):
        if not leaf.candidate.finished:
            continue
        steps, values, before = [], [], ""
        for node in leaf.path():
            added = split_steps(node.candidate.text[len(before):], separator)
            steps += added
            values += [round(node.q, 4)] * len(added)
            before = node.candidate.text
        paths.append({"text": leaf.candidate.text, "steps": steps, "step_values": values})
    pairs = []
    for node in walk(root):
        ranked = sorted(node.children, key=lambda child: -child.q)
        if len(ranked) >= 2 and ranked[0].q - ranked[-1].q >= PAIR_MARGIN:
            prefix = node.candidate.text
            pairs.append({"prefix": prefix, "chosen": ranked[0].candidate.text[len(prefix):],
                          "rejected": ranked[-1].candidate.text[len(prefix):],
                          "margin": round(ranked[0].q - ranked[-1].q, 4)})
    return {"paths": paths, "pairs": pairs}

"""What every search strategy shares: candidates (answers begun or finished), the settings, and `StepSearch`, the
one place that calls the engine and the PRM, so a strategy is only its selection rule and compute is counted once.

A step is the text up to the step separator (`steps.split_steps`). `StepSearch.expand` continues many candidates
by one step each, `width` ways, in one engine call with the separator as a stop string: all open beams of all
questions go to the engine together. A candidate is finished when its step ended otherwise (end of turn, or the
answer's token budget spent). One call serves candidates of different lengths with one token limit (the largest
budget left), so an answer's last step can run past `max_new_tokens` by up to that step's length; it is then
finished, as search-and-learn's answers are bounded by their steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ..prm import ProcessRewardModel, aggregate
from ..records import Messages
from ..sampling import SamplingEngine, SamplingParams
from ..steps import split_steps


@dataclass(frozen=True)
class SearchSettings:
    n: int = 4  # solutions per question (N): samples, beams, or subtrees x beam_width
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 64  # a whole answer's budget, all its steps together
    separator: str = "\n"
    beam_width: int = 4  # M: beam search keeps N/M beams and expands each M ways; DVTS runs N/M subtrees of M
    max_steps: int = 40  # steps before the last expansion runs to the end of the answer
    lookahead: int = 0  # greedy steps taken past a candidate before scoring it (ranking only)
    aggregation: str = "last"  # how a candidate's step scores make the one number strategies rank by
    mcts_simulations: int = 16  # MCTS: selections per question
    mcts_width: int = 4  # MCTS: children per expansion
    mcts_c_puct: float = 2.0  # MCTS: exploration constant (rStar-Math's 2)
    mcts_value: str = "prm"  # MCTS: a new node's value from the PRM, from rollouts to the outcome, or both
    seed: int = 0


@dataclass
class Candidate:
    """An answer begun or finished: its text so far (ending with the separator while open), the PRM's score of
    each of its steps, and the completion tokens generated along its path."""

    question: int
    text: str = ""
    scores: list[float] = field(default_factory=list)
    finished: bool = False
    tokens: int = 0
    prompt_tokens: int = 0  # the question's prompt, through the chat template
    group: int = 0  # DVTS: its subtree
    ranking: float | None = None  # with lookahead: the score it is ranked by

    def steps(self, separator: str) -> list[str]:
        return split_steps(self.text, separator)


@dataclass
class Compute:
    """What a search spent: generated tokens (every step of every candidate, pruned ones included), prompt
    tokens, engine calls, PRM sequences scored and seconds."""

    tokens: int = 0
    prompt_tokens: int = 0
    engine_calls: int = 0
    prm_calls: int = 0
    seconds: float = 0.0

    def as_record(self) -> dict:
        return {"tokens": self.tokens, "prompt_tokens": self.prompt_tokens, "engine_calls": self.engine_calls,
                "prm_calls": self.prm_calls, "seconds": round(self.seconds, 2)}


@dataclass
class SearchResult:
    """One question's solutions (finished candidates) and the index of the one a strategy answers with."""

    solutions: list[Candidate]
    chosen: int | None
    values: list[float | None] = field(default_factory=list)  # each solution's aggregated score (None: no PRM)
    info: dict = field(default_factory=dict)  # strategy-specific: MCTS step values and pairs

    @property
    def answer(self) -> Candidate | None:
        return None if self.chosen is None else self.solutions[self.chosen]


class StepSearch:
    """The engine and PRM calls of one search over `prompts`."""

    def __init__(self, engine: SamplingEngine, prm: ProcessRewardModel | None, prompts: list[Messages],
                 settings: SearchSettings, outcome=None):
        self.engine, self.prm, self.prompts, self.settings = engine, prm, prompts, settings
        # (question indices, texts) -> rewards against the reference answers: rollout values (MCTS, training data)
        self.outcome = outcome
        self.compute = Compute()
        self._calls = 0

    # ------------------------------------------------------------------------------------------ generating
    def request(self, candidate: Candidate) -> Messages:
        """The chat to continue: the question, then the answer begun (continued, not restarted)."""
        prompt = self.prompts[candidate.question]
        return prompt + [{"role": "assistant", "content": candidate.text}] if candidate.text else prompt

    def expand(self, candidates: list[Candidate], width: int, to_end: bool = False,
               temperature: float | None = None) -> list[list[Candidate]]:
        """Each open candidate continued `width` ways by one step (by the rest of its answer with `to_end`), in
        one engine call; a continuation is finished unless it stopped at the separator."""
        open_ = [c for c in candidates if not c.finished]
        budgets = [self.settings.max_new_tokens - c.tokens for c in open_]
        if not open_:
            return [[] for _ in candidates]
        temperature = self.settings.temperature if temperature is None else temperature
        params = SamplingParams(n=width, temperature=temperature, top_p=self.settings.top_p,
                                max_new_tokens=max(1, max(budgets)), stop=() if to_end else (self.settings.separator,),
                                seed=self.settings.seed + 1009 * self._calls)
        self._calls += 1
        start = time.perf_counter()
        outputs = self.engine.generate([self.request(c) for c in open_], params)
        self.compute.seconds += time.perf_counter() - start
        self.compute.engine_calls += 1
        children: dict[int, list[Candidate]] = {}
        for parent, budget, completions in zip(open_, budgets, outputs):
            kids = []
            for completion in completions:
                self.compute.tokens += completion.completion_tokens
                tokens = parent.tokens + completion.completion_tokens
                at_separator = completion.stop_string == self.settings.separator and tokens < self.settings.max_new_tokens
                text = parent.text + completion.text + (self.settings.separator if at_separator else "")
                kids.append(replace(parent, text=text, scores=list(parent.scores), finished=not at_separator,
                                    tokens=tokens, ranking=None,
                                    prompt_tokens=parent.prompt_tokens or completion.prompt_tokens))
            self.compute.prompt_tokens += completions[0].prompt_tokens if completions else 0
            children[id(parent)] = kids
        return [children.get(id(c), []) for c in candidates]

    def complete(self, width: int) -> list[list[Candidate]]:
        """`width` whole answers per question, sampled at once (best-of-N, majority)."""
        return self.expand([Candidate(q) for q in range(len(self.prompts))], width, to_end=True)

    # ------------------------------------------------------------------------------------------- scoring
    def score(self, candidates: list[Candidate]) -> None:
        """Set each candidate's step scores from the PRM, in one call (a causal PRM scores each step from its
        prefix, so earlier steps' scores do not change as a candidate grows)."""
        todo = [c for c in candidates if c.steps(self.settings.separator)]
        if self.prm is None or not todo:
            return
        start = time.perf_counter()
        scores = self.prm.score([self.prompts[c.question] for c in todo],
                                [c.steps(self.settings.separator) for c in todo])
        self.compute.seconds += time.perf_counter() - start
        self.compute.prm_calls += len(todo)
        for candidate, step_scores in zip(todo, scores):
            candidate.scores = step_scores

    def value(self, candidate: Candidate) -> float:
        """The number strategies rank by: the lookahead's score when one was taken, else the aggregated step
        scores (-inf for a candidate without steps)."""
        if candidate.ranking is not None:
            return candidate.ranking
        value = aggregate(candidate.scores, self.settings.aggregation)
        return float("-inf") if value is None else value

    def score_for_ranking(self, candidates: list[Candidate]) -> None:
        """Score the candidates; with `lookahead` k, rank each open one by the score of its greedy k-step
        continuation instead (the continuation only scores: it is not kept)."""
        self.score(candidates)
        if not self.settings.lookahead:
            return
        ahead = {id(c): c for c in candidates if not c.finished}  # each open candidate -> its continuation
        for _ in range(self.settings.lookahead):
            still_open = [key for key, c in ahead.items() if not c.finished]
            if not still_open:
                break
            continued = self.expand([ahead[key] for key in still_open], 1, temperature=0.0)
            for key, kids in zip(still_open, continued):
                ahead[key] = kids[0]
        originals = {id(c) for c in candidates}
        self.score([c for c in ahead.values() if id(c) not in originals])
        for candidate in candidates:
            if id(candidate) in ahead:
                candidate.ranking = self.value(ahead[id(candidate)])

    def reached(self, candidates: list[Candidate]) -> list[float]:
        """1.0 for each candidate whose answer the outcome reward judges right, else 0.0, in one call."""
        if not candidates:
            return []
        rewards = self.outcome([c.question for c in candidates], [c.text for c in candidates])
        return [float(reward is not None and reward >= 1) for reward in rewards]

    def result(self, solutions: list[Candidate], chosen: int | None, info: dict | None = None) -> SearchResult:
        values = [aggregate(s.scores, self.settings.aggregation) if s.scores else None for s in solutions]
        return SearchResult(solutions=solutions, chosen=chosen, values=values, info=info or {})

    def best(self, solutions: list[Candidate]) -> int | None:
        """The index of the highest-valued solution (the first of equals)."""
        if not solutions:
            return None
        return max(range(len(solutions)), key=lambda i: (self.value(solutions[i]), -i))

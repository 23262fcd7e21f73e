"""Asking a model: its decisions on trials (greedy letter + logit(A) - logit(B), one batched
forward pass per batch of trials) and its self-reports of the five weights (greedy)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from reasonlens.progress import Progress
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.release import Decision, Report
from reasonlens.tasks.preferences.replies import CHOICES, parse_report
from reasonlens.tasks.preferences.scenarios import Scenario

#: Greedy tokens a decision may take: the letter, the end token and room to see a longer reply.
DECISION_TOKENS = 4


def decision_prompts(
    tokenizer, scenarios: Mapping[str, Scenario], trials: Sequence[T.Trial]
) -> list[str]:
    """The rendered prompts of `trials`, made exactly as the training prompts are."""
    return [T.render(tokenizer, T.decision_prompt(scenarios[t.scenario], t.a, t.b)) for t in trials]


def decide(
    model,
    scenarios: Mapping[str, Scenario],
    trials: Sequence[T.Trial],
    label: str,
    batch_size: int = 16,
    progress: bool = False,
) -> list[Decision]:
    """The model's decision on every trial: its greedy reply (parsed strictly later) and the
    logit difference at the answer position."""
    from reasonlens.evaluate.choice import read_choices

    if not trials:
        return []
    prompts = decision_prompts(model.tokenizer, scenarios, trials)
    with Progress(progress, len(prompts), f"decisions: {label}") as bar:
        outs = read_choices(
            model, prompts, CHOICES, batch_size, DECISION_TOKENS, on_batch=bar.advance
        )
    return [
        Decision(t.scenario, o.reply, t.a, t.b, o.logit_diff, label)
        for t, o in zip(trials, outs, strict=True)
    ]


def ask_reports(
    model,
    scenarios: Mapping[str, Scenario],
    trials: Sequence[T.Trial],
    label: str,
    version: str,
    batch_size: int = 16,
    max_new_tokens: int = 128,
    progress: bool = False,
) -> list[Report]:
    """One greedy self-report per trial (the trial is shown; no decision is asked), parsed
    strictly: a reply that is not a JSON object of exactly the five names is a bad report."""
    from reasonlens.evaluate.generation import generate_tokens

    if not trials:
        return []
    tok = model.tokenizer
    prompts = [
        T.render(tok, T.introspection_prompt(scenarios[t.scenario], t.a, t.b)) for t in trials
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding
    with Progress(progress, len(prompts), f"self-reports: {label}") as bar:
        ids = generate_tokens(
            model,
            [prompts[i] for i in order],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            chat=False,
            on_batch=bar.advance,
        )
    replies: list[str] = [""] * len(prompts)
    for i, new in zip(order, ids, strict=True):
        replies[i] = tok.decode(new, skip_special_tokens=True)
    return [
        Report(t.scenario, parse_report(r, scenarios[t.scenario].names), r, label, version)
        for t, r in zip(trials, replies, strict=True)
    ]


#: The values a scored self-report chooses among for each weight (the targets are integers in
#: [-100, 100]; the read-out is the expectation over this grid, so it is not limited to it).
SCORED_GRID = tuple(range(-100, 101, 10))

#: The suffix of a part's scored self-reports (files and results keys).
SCORED = "_scored"


def score_reports(
    model,
    scenarios: Mapping[str, Scenario],
    trials: Sequence[T.Trial],
    label: str,
    version: str,
    grid: Sequence[int] = SCORED_GRID,
    progress: bool = False,
) -> list[Report]:
    """Self-reports read from the logits instead of the reply, for a model that may never
    write the JSON: for each attribute, the reply is started as ``{"name": `` and every value
    of `grid` is scored as its continuation (``value,``); the reported weight is the expected
    value under those scores (softmax). Each attribute's key comes first, so attributes after
    the first are read out of their trained order."""
    from reasonlens.evaluate.continuations import continuation_logprobs

    reports = []
    with Progress(progress, len(trials), f"scored self-reports: {label}") as bar:
        for t in trials:
            scenario = scenarios[t.scenario]
            prompt = T.render(model.tokenizer, T.introspection_prompt(scenario, t.a, t.b))
            cands = [f'{{"{n}": {v},' for n in scenario.names for v in grid]
            scores = continuation_logprobs(model, prompt, cands, batch_size=len(cands))
            weights = []
            for k in range(len(scenario.names)):
                lp = scores[k * len(grid) : (k + 1) * len(grid)]
                top = max(lp)
                p = [math.exp(x - top) for x in lp]
                weights.append(sum(pi * v for pi, v in zip(p, grid, strict=True)) / sum(p))
            reports.append(Report(t.scenario, tuple(weights), None, label, version))
            bar.advance(1)
    return reports

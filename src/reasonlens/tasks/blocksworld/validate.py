"""Check plans against the rules and the optimal planner: a model's output or a file's gold.

The point is to make wrong gold plans visible: a public reproduction's "exact match" scored
agreement with plans of which a third were not optimal, and with problems already solved at
the start. :func:`validate_file` reports both, plus duplicates, problems shared with a training
file, and test problems without a unique optimal plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.jsonl import scan_jsonl
from reasonlens.tasks.blocksworld.colors import TABLE
from reasonlens.tasks.blocksworld.example import NO_TABLE_LIMIT, Example, example_from_record
from reasonlens.tasks.blocksworld.formats import parse_plan
from reasonlens.tasks.blocksworld.planner import solve
from reasonlens.tasks.blocksworld.state import Action, Problem, World, run_plan


@dataclass
class PlanCheck:
    """What is right and wrong with one plan for one problem."""

    parsed: bool
    parse_error: str | None = None
    n_steps: int | None = None
    legal: bool = False
    first_illegal_step: int | None = None  # 1-based
    illegal_reason: str | None = None
    goal_reached: bool = False
    # the share of the goal's "X on Y" relations missing at the start that hold after the
    # plan's legal steps (1.0 when none is missing; None when the plan does not parse)
    goal_progress: float | None = None
    optimal_length: int | None = None  # steps; None if the goal is unreachable
    n_optimal_plans: int | None = None
    optimal: bool = False  # legal, reaches the goal, and as short as the planner's plan
    trivial: bool = False  # the goal already holds at the start
    exact_match: bool | None = None  # equals the reference plan (None: no reference given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _actions(plan: str | Sequence[Action]) -> tuple[Action, ...]:
    return parse_plan(plan) if isinstance(plan, str) else tuple(plan)


def on_relations(piles: Iterable[Sequence[str]]) -> set[tuple[str, str]]:
    """(block, what it sits on) for every block of ``piles`` (bottom to top; ``table``)."""
    return {(b, pile[k - 1] if k else TABLE) for pile in piles for k, b in enumerate(pile)}


def goal_progress(problem: Problem, world: World) -> float:
    """The share of the goal's relations missing at the start that ``world`` has made true:
    a dense measure of how far a plan got (a held block sits on nothing)."""
    goal = on_relations(problem.goal)
    missing = goal - on_relations(problem.init)
    if not missing:
        return 1.0
    return len(missing & on_relations(world.piles)) / len(missing)


def check_plan(
    problem: Problem,
    plan: str | Sequence[Action],
    reference: str | Sequence[Action] | None = None,
) -> PlanCheck:
    """Parse (if text), run and score ``plan``; ``reference`` enables ``exact_match``.

    Plan text may start with a ``Plan:`` line. A plan that does not parse is reported, not
    raised; a reference that does not parse raises a UserError (it is meant to be gold).
    """
    solution = solve(problem)
    ref = None if reference is None else _actions(reference)
    check = PlanCheck(
        parsed=False,
        optimal_length=solution.length,
        n_optimal_plans=solution.n_optimal_plans,
        trivial=problem.trivial,
    )
    try:
        actions = _actions(plan)
    except UserError as err:
        check.parse_error = str(err)
        return check
    check.parsed = True
    check.n_steps = len(actions)
    world, bad_step, reason = run_plan(problem, actions)
    check.legal = bad_step is None
    check.first_illegal_step, check.illegal_reason = bad_step, reason
    check.goal_reached = check.legal and world.satisfies(problem.goal)
    check.goal_progress = goal_progress(problem, world)
    check.optimal = check.goal_reached and len(actions) == solution.length
    if ref is not None:
        check.exact_match = actions == ref
    return check


@dataclass
class Finding:
    """The result for one line of a file."""

    line: int
    problem_id: str | None
    split: str | None
    check: PlanCheck | None
    issues: list[str] = field(default_factory=list)
    key: tuple | None = None  # the problem's identity (duplicates share it)

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "problem_id": self.problem_id,
            "split": self.split,
            "issues": self.issues,
            **(self.check.to_dict() if self.check else {"parsed": False}),
        }


@dataclass
class FileReport:
    """Totals over a file and one Finding per example."""

    path: str
    findings: list[Finding]
    against: str | None = None
    slots_rule: str = NO_TABLE_LIMIT  # the table limit applied to records that give none

    def _lines(self, keep) -> list[Finding]:
        return [f for f in self.findings if keep(f)]

    def _distinct(self, findings: list[Finding]) -> int:
        return len({f.key for f in findings if f.key is not None})

    def totals(self) -> dict[str, int]:
        """Counts of *lines*: ``total, parsed, legal, goal_reached, optimal, trivial``,
        ``duplicates`` (lines repeating an earlier line's problem), ``conflicting_gold``
        (of those, lines whose gold plan differs from the earlier line's), ``multiple_optimal``
        (lines whose problem has more than one optimal plan), ``with_issues``, ``overlap``
        (lines whose problem is also in the ``against`` file, when given). Then the same for
        *distinct problems*, with a ``_problems`` suffix: ``problems`` (distinct problems in
        the file), ``trivial_problems``, ``multiple_optimal_problems``, ``overlap_problems``."""

        def checked(attr: str):
            return lambda f: f.check is not None and getattr(f.check, attr)

        def multiple(f: Finding) -> bool:
            return f.check is not None and (f.check.n_optimal_plans or 0) > 1

        def has(marker: str):
            return lambda f: any(marker in i for i in f.issues)

        out = {
            "total": len(self.findings),
            **{a: len(self._lines(checked(a))) for a in ("parsed", "legal", "goal_reached")},
            "optimal": len(self._lines(checked("optimal"))),
            "trivial": len(self._lines(checked("trivial"))),
            "duplicates": len(self._lines(has(_DUP))),
            "conflicting_gold": len(self._lines(has(_CONFLICT))),
            "multiple_optimal": len(self._lines(multiple)),
            "with_issues": len(self._lines(lambda f: bool(f.issues))),
        }
        if self.against is not None:
            out["overlap"] = len(self._lines(has(_OVERLAP)))
        out["problems"] = self._distinct(self.findings)
        out["trivial_problems"] = self._distinct(self._lines(checked("trivial")))
        out["multiple_optimal_problems"] = self._distinct(self._lines(multiple))
        if self.against is not None:
            out["overlap_problems"] = self._distinct(self._lines(has(_OVERLAP)))
        return out

    def issue_lines(self) -> Iterator[str]:
        """``file:line: reason`` for every issue found."""
        for f in self.findings:
            for issue in f.issues:
                yield f"{self.path}:{f.line}: {issue}"


_DUP = "same problem as line"
_CONFLICT = "with a different gold plan"
_OVERLAP = "also in"


def _issues(ex: Example, check: PlanCheck) -> list[str]:
    out = []
    if not check.parsed:
        out.append(f"plan does not parse: {check.parse_error}")
    elif not check.legal:
        out.append(f"step {check.first_illegal_step} is illegal: {check.illegal_reason}")
    elif not check.goal_reached:
        out.append("the plan does not reach the goal")
    elif not check.optimal:
        out.append(
            f"the plan has {check.n_steps} steps but an optimal plan has {check.optimal_length}"
        )
    if check.trivial:
        out.append("the goal already holds in the init state (a 0-step problem)")
    if check.optimal_length is None:
        out.append(f"the goal cannot be reached with {ex.slots} table slots")
    if ex.n_optimal_plans is not None and ex.n_optimal_plans != check.n_optimal_plans:
        out.append(
            f"n_optimal_plans says {ex.n_optimal_plans} but the planner finds "
            f"{check.n_optimal_plans}"
        )
    if ex.split == "test" and (check.n_optimal_plans or 0) > 1:
        out.append(f"test problem has {check.n_optimal_plans} optimal plans, not a unique one")
    return out


def _problem_keys(path: str | Path, slots: int | None) -> dict[tuple, int]:
    keys: dict[tuple, int] = {}
    for n, rec in scan_jsonl(path):
        if isinstance(rec, UserError):
            continue
        try:
            keys.setdefault(example_from_record(rec, slots=slots).problem.key, n)
        except UserError:
            continue
    return keys


def validate_file(
    path: str | Path, *, slots: int | None = None, against: str | Path | None = None
) -> FileReport:
    """Check every example of a JSONL file (either layout); bad lines become findings.

    ``slots`` applies to seed-layout records that do not say (default: no table limit, as
    many slots as blocks; the report's ``slots_rule`` says which). ``against`` is another
    file (e.g. the training file) whose problems must not occur in this one.
    """
    other = _problem_keys(against, slots) if against is not None else {}
    seen: dict[tuple, tuple[int, tuple]] = {}  # problem -> (first line, its gold plan)
    findings = []
    for n, rec in scan_jsonl(path):
        try:
            if isinstance(rec, UserError):
                raise rec
            ex = example_from_record(rec, slots=slots)
            check = check_plan(ex.problem, ex.plan)
        except UserError as err:
            split = rec.get("split") if isinstance(rec, dict) else None
            split = split if isinstance(split, str) else None
            findings.append(Finding(n, None, split, None, [str(err)]))
            continue
        key = ex.problem.key
        finding = Finding(n, ex.problem_id, ex.split, check, _issues(ex, check), key)
        if key in seen:
            first, gold = seen[key]
            conflict = f" {_CONFLICT}" if tuple(ex.plan) != gold else ""
            finding.issues.append(f"{_DUP} {first}{conflict}")
        else:
            seen[key] = (n, tuple(ex.plan))
        if key in other:
            finding.issues.append(f"problem {_OVERLAP} {against} (line {other[key]})")
        findings.append(finding)
    rule = NO_TABLE_LIMIT if slots is None else f"{slots} table slots (--slots)"
    return FileReport(str(path), findings, None if against is None else str(against), rule)

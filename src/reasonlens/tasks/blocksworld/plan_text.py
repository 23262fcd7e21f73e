"""Where a generated plan ends: the rule that stops generation and cuts its output.

The prompt ends with ``Plan:\\n``, so a model that has learnt the format writes step lines and
then either EOS or something else (a blank line, a new ``Rule:`` block, chatter). The plan is the
run of step lines at the start of the output; it ends at the first line that is not a step line.

- A *step line* is any line starting ``step N:`` (loosely: the validator, not this rule, decides
  whether the rest of the line is a legal action, so a malformed step is judged, not dropped).
- Blank lines before the first step are skipped; a blank line after a step ends the plan.
- An output whose first non-blank line is not a step line is kept as that one line, so the
  validator reports it as unparsed and says why.
- A last line cut short by the token limit is kept: the validator judges the truncated step.

Generation stops as soon as the plan has ended this way (or at EOS, or at the token limit), so
a batch does not spend time on text that would be cut anyway.
"""

from __future__ import annotations

import re

_STEP_LINE = re.compile(r"\s*step \d+:")


def is_step_line(line: str) -> bool:
    return bool(_STEP_LINE.match(line))


def plan_finished(text: str) -> bool:
    """True once ``text`` holds a complete line that ends the plan (see the module docstring)."""
    complete = text.split("\n")[:-1]
    started = False
    for line in complete:
        if is_step_line(line):
            started = True
        elif line.strip() or started:
            return True
    return False


def cut_plan(text: str) -> str:
    """The plan at the start of a model's output: its step lines, without what follows."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return ""
    if not is_step_line(lines[0]):
        return lines[0]
    kept = []
    for line in lines:
        if not is_step_line(line):
            break
        kept.append(line)
    return "\n".join(kept)

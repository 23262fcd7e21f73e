"""Blocksworld as in the planning study: exact optimal planner, generator, validator, formats.

Pure Python (no torch). Typical use::

    from reasonlens.tasks.blocksworld import resolve_config, write_dataset, validate_file
    write_dataset(resolve_config("paper", seed=0), "data/bw")
    report = validate_file("data/bw/L3_test.jsonl", against="data/bw/L3_train.jsonl")
"""

from reasonlens.tasks.blocksworld.colors import DEFAULT_COLORS, PAPER_COLORS, TABLE
from reasonlens.tasks.blocksworld.dataset import (
    PAPER_TABLE1,
    PRESETS,
    DatasetConfig,
    generate_dataset,
    resolve_config,
    write_dataset,
)
from reasonlens.tasks.blocksworld.example import Example, example_from_record, make_example
from reasonlens.tasks.blocksworld.files import read_examples, write_examples
from reasonlens.tasks.blocksworld.formats import (
    FORMATS,
    PAPER_RULE,
    SEED_RULE,
    Spans,
    StepSpans,
    parse_plan,
    parse_text,
    render,
)
from reasonlens.tasks.blocksworld.generate import (
    LEVELS,
    count_problems,
    generate_problems,
    generate_split,
    parse_level,
)
from reasonlens.tasks.blocksworld.plan_text import cut_plan, plan_finished
from reasonlens.tasks.blocksworld.planner import (
    MAX_BLOCKS,
    Solution,
    optimal_plan,
    optimal_plans,
    solve,
)
from reasonlens.tasks.blocksworld.state import (
    Action,
    IllegalAction,
    Problem,
    World,
    canonical,
    make_problem,
    parse_action,
    pick_up,
    run_plan,
    stack,
)
from reasonlens.tasks.blocksworld.task import BlocksworldTask, plan_verdicts
from reasonlens.tasks.blocksworld.tokens import EncodedExample, encode_example
from reasonlens.tasks.blocksworld.validate import FileReport, PlanCheck, check_plan, validate_file

__all__ = [
    "DEFAULT_COLORS",
    "FORMATS",
    "LEVELS",
    "MAX_BLOCKS",
    "PAPER_COLORS",
    "PAPER_RULE",
    "PAPER_TABLE1",
    "PRESETS",
    "SEED_RULE",
    "TABLE",
    "Action",
    "BlocksworldTask",
    "DatasetConfig",
    "EncodedExample",
    "Example",
    "FileReport",
    "IllegalAction",
    "PlanCheck",
    "Problem",
    "Solution",
    "Spans",
    "StepSpans",
    "World",
    "canonical",
    "check_plan",
    "count_problems",
    "cut_plan",
    "encode_example",
    "example_from_record",
    "generate_dataset",
    "generate_problems",
    "generate_split",
    "make_example",
    "make_problem",
    "optimal_plan",
    "optimal_plans",
    "parse_action",
    "parse_level",
    "parse_plan",
    "parse_text",
    "plan_finished",
    "plan_verdicts",
    "pick_up",
    "read_examples",
    "render",
    "resolve_config",
    "run_plan",
    "solve",
    "stack",
    "validate_file",
    "write_dataset",
    "write_examples",
]

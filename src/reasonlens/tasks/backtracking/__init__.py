"""Backtracking: maze-search traces with exact labels, a checker for any chain, external chains.

Pure Python (no torch; tokenizers only where tokens are labelled). Typical use::

    from reasonlens.tasks.backtracking import (
        check_trace, generate_split, label_chains, read_chains, record_chain, to_record,
    )
    train, test = generate_split(400, 100, seed=0)           # traces of distinct mazes
    records = [to_record(t, f"train-{i}", "train") for i, t in enumerate(train)]
    checked = check_trace(train[0].maze, sampled_text)       # where a model backtracked
    rows = label_chains(tokenizer, read_chains("all_annotated_chains.json"), template="chat")
"""

from reasonlens.tasks.backtracking.chains import (
    SOURCE_LABELS,
    Chain,
    LabelledSpan,
    align_markup,
    parse_annotated,
    parse_markup,
    parse_span_record,
    read_chains,
    span_records,
)
from reasonlens.tasks.backtracking.checker import CheckedTrace, check_trace, summarize
from reasonlens.tasks.backtracking.labels import (
    LabelRow,
    label_chain,
    label_chains,
    read_labels,
    record_chain,
    render_prompt,
    write_labels,
)
from reasonlens.tasks.backtracking.puzzle import ROOM_NAMES, Maze, prompt_text, random_maze
from reasonlens.tasks.backtracking.task import BacktrackingTask
from reasonlens.tasks.backtracking.traces import (
    BACKTRACK_KINDS,
    BACKTRACKING,
    TEMPLATES,
    Backtrack,
    Trace,
    TraceConfig,
    generate_split,
    generate_trace,
    generate_traces,
    sentence,
    to_record,
    write_records,
)

__all__ = [
    "BACKTRACKING",
    "BACKTRACK_KINDS",
    "ROOM_NAMES",
    "SOURCE_LABELS",
    "TEMPLATES",
    "Backtrack",
    "BacktrackingTask",
    "Chain",
    "CheckedTrace",
    "LabelRow",
    "LabelledSpan",
    "Maze",
    "Trace",
    "TraceConfig",
    "align_markup",
    "check_trace",
    "generate_split",
    "generate_trace",
    "generate_traces",
    "label_chain",
    "label_chains",
    "parse_annotated",
    "parse_markup",
    "parse_span_record",
    "prompt_text",
    "random_maze",
    "read_chains",
    "read_labels",
    "record_chain",
    "render_prompt",
    "sentence",
    "span_records",
    "summarize",
    "to_record",
    "write_labels",
    "write_records",
]

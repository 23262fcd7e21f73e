"""The task interface: items, the registry, and a light import (no torch, no transformers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks import Breakdown, Task, TaskItem, get_task


class Echo(Task):
    name, title, description = "echo", "Echo", "repeat the prompt"

    def read(self, path):
        return []

    def recognizes(self, record):
        return False

    def score(self, item, completion):
        return {"exact": completion == item.completion}


def test_an_item_text_is_prompt_plus_completion_and_source_is_not_compared():
    a = TaskItem("1", "Q:", " A", source=object())
    assert a.text == "Q: A" and a == TaskItem("1", "Q:", " A", source=object())
    assert a.spans == {} and a.labels == {} and a.group == a.split == ""


def test_the_base_defaults_stop_never_cut_nothing_and_take_task_items():
    task = Echo()
    item = TaskItem("1", "Q:", " A")
    assert task.stop("anything") is False and task.cut(" A\nmore") == " A\nmore"
    assert task.item(item) is item and task.header("exact") == "exact"
    with pytest.raises(TypeError, match="echo items are TaskItems"):
        task.item({"prompt": "Q:"})
    assert Breakdown(lambda labels: labels["k"])({"k": "x"}) == "x"


def test_an_unknown_task_name_is_a_user_error_listing_the_known_ones():
    with pytest.raises(UserError, match="unknown task 'blockworld'.*valid: .*blocksworld"):
        get_task("blockworld")


def test_the_tasks_import_neither_torch_nor_transformers():
    code = (
        "import json, sys\n"
        "from reasonlens.tasks import TASKS, task_for_record\n"
        "from reasonlens.tasks.blocksworld.tokens import encode_example\n"
        "import reasonlens.tasks.tokens\n"
        "task = task_for_record({'problem_id': 'x'})\n"
        "print(json.dumps([task.name, [m for m in ('torch', 'transformers') if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["blocksworld", []]

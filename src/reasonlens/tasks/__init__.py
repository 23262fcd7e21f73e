"""Tasks: generators, text formats, parsers, validators, and the interface the rest of
reasonlens uses to train and evaluate on them (pure Python, no torch).

:class:`~reasonlens.tasks.base.Task` and :class:`~reasonlens.tasks.base.TaskItem` are that
interface; :data:`TASKS` names every task (each built on first use) and
:func:`task_for_record` says which one a JSONL record belongs to.
"""

from reasonlens.tasks.base import Breakdown, Task, TaskItem
from reasonlens.tasks.registry import TASKS, get_task, task_for_record

__all__ = ["TASKS", "Breakdown", "Task", "TaskItem", "get_task", "task_for_record"]

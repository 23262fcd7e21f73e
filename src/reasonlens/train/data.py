"""Training data: prompt/completion pairs from JSONL files, tokenised with completion-only labels.

Two kinds of file are read:

- A task's JSONL: when a task recognises the first record
  (:func:`reasonlens.tasks.task_for_record`), the file is read and checked by that task; the
  model sees each item's `prompt` and learns its `completion`.
- Generic JSONL: one object per line with string fields `prompt` and `completion`, used as is.

The full text is tokenised once, with offsets; a token is a completion token when its first
character lies at or after ``len(prompt)``. The loss covers those tokens and the EOS appended
after them, never the prompt, so training sees exactly the tokens evaluation sees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from reasonlens.errors import UserError, check_unicode
from reasonlens.jsonl import parse_jsonl, read_bytes
from reasonlens.tasks import task_for_record

IGNORE = -100
#: DataFile.kind of a file no task recognises.
GENERIC = "prompt-completion"


@dataclass(frozen=True)
class Pair:
    """One training example: what the model is shown, and what it must learn to write."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class DataFile:
    """Where pairs came from, for the run's record (and to notice a file changed on resume)."""

    path: str
    kind: str  # the task's name, or "prompt-completion"
    examples: int
    sha256: str


@dataclass(frozen=True)
class TokenizedPair:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_completion(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def read_pairs(paths: Sequence[str | Path]) -> tuple[list[Pair], list[DataFile]]:
    """Every pair in `paths`, in order; a bad file is a UserError naming file:line."""
    pairs: list[Pair] = []
    files: list[DataFile] = []
    for path in paths:
        path = Path(path)
        raw = read_bytes(path)
        task = task_for_record(_first_record(path, raw))
        if task is not None:
            kind = task.name
            found = [Pair(it.prompt, it.completion) for it in task.read(path)]
        else:
            kind = GENERIC
            found = _read_generic(path, raw.decode("utf-8"))
        if not found:
            raise UserError(f"{path}: no examples (the file is empty)")
        pairs.extend(found)
        files.append(DataFile(str(path), kind, len(found), hashlib.sha256(raw).hexdigest()))
    return pairs, files


def _first_record(path: Path, raw: bytes) -> object:
    """The first record (it tells which task wrote the file), or None in an empty file."""
    lines = parse_jsonl(raw.decode("utf-8"), path, "expected one JSON object per line")
    return next((record for _, record in lines), None)


def _read_generic(path: Path, text: str) -> list[Pair]:
    expected = "expected a JSON object with string fields 'prompt' and 'completion'"
    pairs = []
    for n, record in parse_jsonl(text, path, expected):
        if not isinstance(record, dict):
            raise UserError(f"{path}:{n}: {expected}, got {type(record).__name__}")
        for key in ("prompt", "completion"):
            if not isinstance(record.get(key), str):
                got = "missing" if key not in record else type(record[key]).__name__
                raise UserError(f"{path}:{n}: {expected}; {key!r} is {got}")
            check_unicode(record[key], f"{path}:{n}: {key!r}")
        if not record["completion"]:
            raise UserError(f"{path}:{n}: 'completion' is empty: there would be nothing to learn")
        pairs.append(Pair(record["prompt"], record["completion"]))
    return pairs


def tokenize_pair(tokenizer: PreTrainedTokenizerBase, pair: Pair) -> TokenizedPair:
    """Token ids of prompt + completion + EOS, and labels that are -100 on every prompt token.

    A token that starts inside the prompt is a prompt token, even if it runs into the
    completion: the model is never asked to produce text it was shown.
    """
    if not tokenizer.is_fast:
        raise UserError("training needs a fast tokenizer (it reads token offsets)")
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token: the model could not learn where to stop")
    text = pair.prompt + pair.completion
    bos = tokenizer.bos_token
    add_special = not (bool(bos) and text.startswith(bos))  # as models.prompts.tokenize
    enc = tokenizer(
        text,
        add_special_tokens=add_special,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    boundary = len(pair.prompt)
    ids = list(enc["input_ids"])
    labels = [
        tok if start >= boundary and not special else IGNORE
        for tok, (start, _), special in zip(
            ids, enc["offset_mapping"], enc["special_tokens_mask"], strict=True
        )
    ]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    else:  # the tokenizer appends EOS itself: it is the end of the completion, so learn it
        labels[-1] = tokenizer.eos_token_id
    return TokenizedPair(ids, labels)


def tokenize_pairs(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], max_length: int
) -> list[TokenizedPair]:
    """Tokenise every pair; refuse (never truncate) one longer than `max_length` tokens."""
    out = [tokenize_pair(tokenizer, p) for p in pairs]
    too_long = [i for i, t in enumerate(out) if len(t.input_ids) > max_length]
    if too_long:
        longest = max(len(out[i].input_ids) for i in too_long)
        raise UserError(
            f"{len(too_long)} of {len(out)} examples are longer than max_length={max_length} "
            f"tokens (longest: {longest}); raise --max-length (truncating would cut the answer)"
        )
    empty = [i for i, t in enumerate(out) if t.n_completion <= 1]
    if len(empty) == len(out):
        raise UserError(
            "no example has a completion token to learn (check the 'completion' fields)"
        )
    return out

"""Character spans to 0/1 token labels, through the tokenizer's offsets: ``chains/labels.jsonl``.

The model reads ``prompt + chain``; the prompt is the problem rendered as the user names it
(:func:`render_prompt`: nothing, the problem as is, the tokenizer's chat template, or a given
template). That text is tokenised once, with offsets (special tokens as the tokenizer adds
them; no second BOS when the rendered prompt already starts with one). The chain's spans are
shifted by the prompt's length, and a token is positive when it overlaps a span of the target
label (any label; ``backtracking`` by default): a token merging characters from both sides of
a span boundary is positive. Zero-width tokens (BOS and other special tokens) never are.

The prompt's tokens are label 0 and are not chain tokens: ``start`` is the first token whose
first character lies at or after the end of the prompt (a token straddling the boundary is a
prompt token, as in training). One line per chain::

    {"id": "17", "input_ids": [...], "labels": [0, 0, 1, ...], "start": 42}

``input_ids`` are exactly what capture should run (``{"input_ids": ...}`` trace inputs), so
the activation store's tokens can be checked against this file row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonlens.errors import UserError
from reasonlens.jsonl import iter_jsonl
from reasonlens.runs.files import atomic_write
from reasonlens.tasks.backtracking.chains import Chain, LabelledSpan
from reasonlens.tasks.backtracking.traces import BACKTRACKING
from reasonlens.tasks.tokens import TokenLocator, encode_text

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

#: How a chain's problem becomes the prompt in front of it (see :func:`render_prompt`).
TEMPLATES = ("none", "raw", "chat")


@dataclass(frozen=True)
class LabelRow:
    """One chain as tokens with 0/1 labels; tokens before ``start`` are the prompt."""

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    start: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_chain_tokens(self) -> int:
        return len(self.input_ids) - self.start

    @property
    def n_positive(self) -> int:
        return sum(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "input_ids": list(self.input_ids),
            "labels": list(self.labels),
            "start": self.start,
        }


def render_prompt(tokenizer: PreTrainedTokenizerBase, problem: str | None, template: str) -> str:
    """The text in front of a chain.

    template: ``"none"`` (no prompt: the chain alone), ``"raw"`` (the problem as is, or
    nothing for a chain without one), ``"chat"`` (the tokenizer's chat template around the
    problem as the user message, the assistant's turn opened), or a Jinja chat template (its
    text, or the path of a ``.jinja`` file) used the same way.
    """
    if template == "none":
        return ""
    if template == "raw":
        return problem or ""
    if problem is None:
        raise UserError("a chat template needs the chain's problem (the user message)")
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat template: name one, or use 'raw'")
        custom = None
    else:
        custom = _template_text(template)
    try:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": problem}],
            add_generation_prompt=True,
            tokenize=False,
            chat_template=custom,
        )
    except Exception as err:  # noqa: BLE001 - jinja raises many kinds
        raise UserError(f"the chat template failed: {str(err).splitlines()[0]}") from None


def _template_text(template: str) -> str:
    if "{" in template:  # Jinja text
        return template
    path = Path(template)
    if not path.is_file():
        raise UserError(
            f"chat template {template!r} is neither one of {', '.join(TEMPLATES)}, a Jinja "
            "template, nor a file"
        )
    return path.read_text(encoding="utf-8")


def label_chain(
    tokenizer: PreTrainedTokenizerBase,
    chain: Chain,
    target: str = BACKTRACKING,
    *,
    template: str = "raw",
    prompt: str | None = None,
    min_tokens: int = 0,
) -> LabelRow:
    """``chain`` as a :class:`LabelRow`: ``prompt`` (default: :func:`render_prompt` of the
    chain's problem) then the chain, token i labelled 1 when it overlaps a ``target`` span.

    A chain with fewer than ``min_tokens`` chain tokens (the largest probe lag) is a UserError
    naming it, as is a span that covers no token and a tokenizer without offsets."""
    where = f"chain {chain.id!r}"
    try:
        prefix = render_prompt(tokenizer, chain.problem, template) if prompt is None else prompt
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    text = prefix + chain.text
    for s in chain.spans:
        if not 0 <= s.start < s.end <= len(chain.text):
            raise UserError(
                f"{where}: span [{s.start}, {s.end}) ({s.label}) is out of range for a chain of "
                f"{len(chain.text)} characters"
            )
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bool(bos) and text.startswith(bos))
    try:
        ids, offsets = _encode(tokenizer, text, add_special)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None
    boundary = len(prefix)
    start = next((i for i, (s, e) in enumerate(offsets) if s >= boundary and e > s), None)
    if start is None:
        raise UserError(f"{where}: the chain has no tokens after its prompt")
    n_chain = len(ids) - start
    if n_chain < min_tokens:
        raise UserError(
            f"{where}: {n_chain} tokens, fewer than the minimum {min_tokens} (the largest lag): "
            "drop the chain or use smaller lags"
        )
    labels = [0] * len(ids)
    locator = TokenLocator(offsets)
    for s in chain.spans:
        if s.label != target:
            continue
        try:
            lo, hi = locator.span((s.start + boundary, s.end + boundary))
        except ValueError:
            if chain.text[s.start : s.end].isspace():
                continue  # whitespace the tokenizer folds into no token
            raise UserError(f"{where}: span [{s.start}, {s.end}) covers no token") from None
        for i in range(max(lo, start), hi):
            labels[i] = 1
    return LabelRow(chain.id, tuple(ids), tuple(labels), start)


def _encode(tokenizer, text: str, add_special: bool):
    if add_special:
        return encode_text(tokenizer, text)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("labelling tokens needs a fast tokenizer (one with offset mappings)")
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    return tuple(enc["input_ids"]), tuple((int(s), int(e)) for s, e in enc["offset_mapping"])


def label_chains(
    tokenizer: PreTrainedTokenizerBase,
    chains: Sequence[Chain],
    target: str = BACKTRACKING,
    *,
    template: str = "raw",
    prompts: Sequence[str] | None = None,
    min_tokens: int = 0,
) -> list[LabelRow]:
    """:func:`label_chain` for every chain (``prompts``: one given prompt per chain). A
    ``target`` label that no chain has is a UserError listing the labels there are."""
    if not chains:
        raise UserError("no chains to label")
    if prompts is not None and len(prompts) != len(chains):
        raise UserError(f"{len(prompts)} prompts for {len(chains)} chains")
    if not any(target in c.labels for c in chains):
        found = sorted(set().union(*(c.labels for c in chains)))
        raise UserError(
            f"label {target!r} occurs in none of the {len(chains)} chains; labels there: "
            f"{', '.join(found) or 'none'}"
        )
    return [
        label_chain(
            tokenizer,
            c,
            target,
            template=template,
            prompt=None if prompts is None else prompts[i],
            min_tokens=min_tokens,
        )
        for i, c in enumerate(chains)
    ]


def record_chain(record: dict[str, Any]) -> tuple[Chain, str]:
    """A backtracking task record (:func:`.traces.to_record`) as a Chain of its completion
    with its backtracking spans, and the record's prompt (to pass as ``prompt``)."""
    spans = tuple(
        LabelledSpan(s["start"], s["end"], s.get("label", BACKTRACKING)) for s in record["spans"]
    )
    return Chain(str(record["id"]), record["completion"], spans, record["prompt"]), record["prompt"]


def write_labels(path: str | Path, rows: Iterable[LabelRow]) -> Path:
    """``chains/labels.jsonl``: one JSON line per chain, written atomically."""
    atomic_write(path, "".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    return Path(path)


def read_labels(path: str | Path) -> list[LabelRow]:
    """Rows of a labels file; a malformed line is a UserError naming ``file:line``."""
    path = Path(path)
    rows = []
    for n, rec in iter_jsonl(path):
        where = f"{path}:{n}"
        if not isinstance(rec, dict):
            raise UserError(f"{where}: expected an object with id, input_ids, labels, start")
        ids, labels, start = rec.get("input_ids"), rec.get("labels"), rec.get("start", 0)
        if not (isinstance(ids, list) and isinstance(labels, list) and len(ids) == len(labels)):
            raise UserError(f"{where}: 'input_ids' and 'labels' must be lists of equal length")
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids):
            raise UserError(f"{where}: 'input_ids' must be non-negative integers")
        if not all(v in (0, 1) and not isinstance(v, bool) for v in labels):
            raise UserError(f"{where}: 'labels' must be 0 or 1 per token")
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start < len(ids):
            raise UserError(f"{where}: 'start' must be a token index of the row")
        rows.append(LabelRow(str(rec.get("id", n)), tuple(ids), tuple(labels), start))
    return rows

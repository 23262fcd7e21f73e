"""Time the extraction rate, information flow and key masking analyses on the default model.

    uv run python benchmarks/bench_analyses.py [--examples 10] [--scaling-examples 2]
                                               [--skip-scaling] [--json out.json]

1. Per problem: the three analyses on real Blocksworld texts (L3, 6 blocks, 6 plan steps,
   ~250 tokens), SmolLM2-135M on the CPU in fp32, each with its default batch size.
2. Layers: the same problems with the model truncated to its first 8 / 15 / 30 layers.
3. Sequence length: random tokens of 128 / 256 / 512 tokens, 6 readouts/targets in the last
   third (the plan of a real problem sits at its end), chunks and one-token groups before them.

Times are wall-clock seconds per problem from one run, after a warm-up on one problem; on a
shared machine they move with the load, so compare figures from the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from reasonlens.analyses.extraction import extraction_rates
from reasonlens.analyses.flow import information_flow
from reasonlens.analyses.masking import masking_impact
from reasonlens.models import load_model
from reasonlens.models.prompts import tokenize
from reasonlens.tasks.blocksworld.dataset import generate_dataset, resolve_config


@dataclass
class Problems:
    """Inputs of the three analyses for a set of problems."""

    input_ids: list[list[int]]
    readouts: list[list[int]]
    targets: list[list[tuple[int, int]]]
    chunks: list[list[dict[str, tuple[int, int]]]]
    groups: list[list[list[list[int]]]]

    @property
    def mean_tokens(self) -> float:
        return sum(len(x) for x in self.input_ids) / len(self.input_ids)


def _token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """The token whose characters contain `char`."""
    for index, (start, end) in enumerate(offsets):
        if start <= char < end:
            return index
    raise ValueError(f"no token covers character {char}")


def _tokens(offsets: list[tuple[int, int]], span: tuple[int, int]) -> tuple[int, int]:
    """[first, last + 1) of the tokens overlapping the character span."""
    first = _token_at(offsets, span[0])
    last = _token_at(offsets, span[1] - 1)
    return first, last + 1


def blocksworld(model, n: int) -> Problems:
    """Real L3 6-block problems, with the paper's readouts, chunks and history colour tokens."""
    config = resolve_config("paper", levels=["L3"], blocks=[6], train=0, test=n)
    examples = generate_dataset(config)["L3_test.jsonl"][:n]
    tok = model.tokenizer
    out = Problems([], [], [], [], [])
    for ex in examples:
        encoded = tok(ex.text, add_special_tokens=True, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        assert ids == tokenize(tok, ex.text)
        offsets = encoded["offset_mapping"]
        spans = ex.spans
        answers = [_token_at(offsets, s.answer[0]) for s in spans.steps]
        fixed = {
            "init token": _tokens(offsets, spans.init_header),
            "init state": _tokens(offsets, spans.init_state),
            "goal token": _tokens(offsets, spans.goal_header),
            "goal state": _tokens(offsets, spans.goal_state),
            "plan token": _tokens(offsets, spans.plan_header),
        }
        step_chunks = []
        for t, step in enumerate(spans.steps):
            chunks = dict(fixed)
            for k in range(t):
                chunks[f"history {k + 1}"] = _tokens(offsets, spans.steps[k].step)
            start, _ = _tokens(offsets, step.step)
            chunks["action prompt"] = (start, answers[t])  # up to the readout, inclusive
            step_chunks.append(chunks)
        out.input_ids.append(ids)
        out.readouts.append([a - 1 for a in answers])
        out.targets.append([(a - 1, ids[a]) for a in answers])
        out.chunks.append(step_chunks)
        out.groups.append([[[answers[k]] for k in range(t)] for t in range(len(answers))])
    return out


def synthetic(model, n: int, length: int, steps: int = 6, seed: int = 0) -> Problems:
    """Random tokens with the shape of a problem: 6 targets in the last third of the text."""
    gen = torch.Generator().manual_seed(seed)
    out = Problems([], [], [], [], [])
    first = 2 * length // 3
    for _ in range(n):
        ids = torch.randint(100, model.vocab_size - 100, (length,), generator=gen).tolist()
        answers = [first + (length - 1 - first) * (t + 1) // steps for t in range(steps)]
        cut = [0, length // 6, length // 3, length // 2, first]
        fixed = {f"chunk {i}": (cut[i], cut[i + 1]) for i in range(4)}
        out.input_ids.append(ids)
        out.readouts.append([a - 1 for a in answers])
        out.targets.append([(a - 1, ids[a]) for a in answers])
        out.chunks.append([{**fixed, "plan": (first, a - 1), "last": (a - 2, a)} for a in answers])
        out.groups.append([[[answers[k]] for k in range(t)] for t in range(steps)])
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_analyses(model, problems: Problems) -> dict[str, float]:
    """Seconds per problem for each analysis."""
    n = len(problems.input_ids)
    seconds = {
        "extraction": _timed(
            lambda: extraction_rates(model, problems.input_ids, problems.readouts)
        ),
        "flow": _timed(
            lambda: information_flow(model, problems.input_ids, problems.targets, problems.chunks)
        ),
        "masking": _timed(
            lambda: masking_impact(model, problems.input_ids, problems.targets, problems.groups)
        ),
    }
    return {name: round(value / n, 2) for name, value in seconds.items()}


def bare_forward(model, problems: Problems) -> float:
    """Seconds per problem of one plain forward pass (batch 8), the unit everything is worth."""

    def run():
        with torch.inference_mode():
            for start in range(0, len(problems.input_ids), 8):
                chunk = problems.input_ids[start : start + 8]
                width = max(len(x) for x in chunk)
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                mask = torch.zeros(len(chunk), width, dtype=torch.long)
                for row, x in enumerate(chunk):
                    ids[row, : len(x)] = torch.tensor(x)
                    mask[row, : len(x)] = 1
                model.hf(input_ids=ids, attention_mask=mask, use_cache=False)

    return round(_timed(run) / len(problems.input_ids), 2)


@contextmanager
def truncated(model, n_layers: int) -> Iterator[None]:
    """The model with only its first `n_layers` layers (restored on exit)."""
    base, config = model.base, model.hf.config
    layers, count = base.layers, config.num_hidden_layers
    types = getattr(config, "layer_types", None)
    base.layers = torch.nn.ModuleList(list(layers)[:n_layers])
    config.num_hidden_layers = n_layers
    if types is not None:
        config.layer_types = types[:n_layers]
    try:
        yield
    finally:
        base.layers, config.num_hidden_layers = layers, count
        if types is not None:
            config.layer_types = types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--scaling-examples", type=int, default=2)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared, oversubscribed machine two OpenMP "
        "threads wait on each other and the backward passes of the flow run up to 10x slower)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model("smollm2-135m", device="cpu", dtype="float32")
    report: dict = {
        "model": model.name,
        "layers": model.n_layers,
        "torch_threads": torch.get_num_threads(),
    }
    problems = blocksworld(model, args.examples)
    # warm-up (first-call allocations, eager-attention switch) on one problem, not timed
    time_analyses(model, blocksworld(model, 1))
    report["blocksworld"] = {
        "problems": args.examples,
        "mean_tokens": round(problems.mean_tokens, 1),
        "bare_forward_s": bare_forward(model, problems),
        "seconds_per_problem": time_analyses(model, problems),
    }
    print(json.dumps(report["blocksworld"], indent=2), flush=True)

    if not args.skip_scaling:
        few = blocksworld(model, args.scaling_examples)
        by_layers = {}
        for n_layers in (8, 15, model.n_layers):
            with truncated(model, n_layers):
                by_layers[n_layers] = time_analyses(model, few)
            print(f"layers {n_layers}: {by_layers[n_layers]}", flush=True)
        report["by_layers"] = by_layers
        by_length = {}
        for length in (128, 256, 512):
            inputs = synthetic(model, args.scaling_examples, length)
            by_length[length] = {
                "bare_forward_s": bare_forward(model, inputs),
                **time_analyses(model, inputs),
            }
            print(f"length {length}: {by_length[length]}", flush=True)
        report["by_length"] = by_length

    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()

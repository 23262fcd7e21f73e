"""Training throughput of `reasonlens train` against a bare PyTorch loop, and its padding.

    uv run python benchmarks/bench_train.py [--steps 3] [--batch-size 8] [--threads N]
        [--task blocksworld|preferences]

Both sides full-fine-tune the default model (SmolLM2-135M, fp32, CPU) on the same batches of
Blocksworld plans or (``--task preferences``) the preferences study's cpu-preset decisions (one
letter of completion after a ~240-token prompt: the LM head runs at one position), in the
length-grouped order reasonlens builds (so the same sequence lengths), with
AdamW, gradient clipping at 1.0 and the same loss (completion tokens only), for the same number
of steps. The two run interleaved in one process (a bare step after each reasonlens step, as a
Trainer callback), so both see the same machine load; the first step of each is a warm-up and
is not timed. A step's time covers data, forward, backward, optimizer and logging.

Reported: tokens/s of each (real, non-padding tokens), their ratio (target: reasonlens >= 0.9x
the bare loop), and the padding fraction of reasonlens' batches (target: <= 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import TrainerCallback, get_linear_schedule_with_warmup  # noqa: E402

from reasonlens.models import load_model, load_tokenizer  # noqa: E402
from reasonlens.models.prompts import pad_batch  # noqa: E402
from reasonlens.tasks.blocksworld import (  # noqa: E402
    generate_dataset,
    resolve_config,
    write_examples,
)
from reasonlens.train import TrainConfig, train  # noqa: E402
from reasonlens.train.batching import grouped_order, padding_fraction  # noqa: E402
from reasonlens.train.data import IGNORE, read_pairs, tokenize_pairs  # noqa: E402

MODEL = "smollm2-135m"
SEED = 0
LR = 5e-5


class Interleaved(TrainerCallback):
    """Runs one bare-loop step after each reasonlens step, so both see the same machine load.

    A reasonlens step is timed from the end of the previous bare step to the end of its own
    optimizer step (so it includes its data loading and the previous step's logging); a bare
    step from its start (collation included) to the end of its optimizer step.
    """

    def __init__(self, bare: BareLoop) -> None:
        self.bare = bare
        self.ours: list[float] = []
        self.mark = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.ours.append(time.perf_counter() - self.mark)
        self.bare.step()
        self.mark = time.perf_counter()


class BareLoop:
    """The textbook loop: forward, loss, backward, clip, AdamW, schedule, zero_grad."""

    def __init__(self, batches, steps: int) -> None:
        torch.manual_seed(SEED)
        self.model = load_model(MODEL, device="cpu", dtype="float32").hf
        self.model.train()
        self.pad = load_tokenizer(MODEL).pad_token_id
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=0.0, fused=True)
        self.sched = get_linear_schedule_with_warmup(self.opt, 0, steps)
        self.batches = iter(batches)
        self.times: list[float] = []

    def step(self) -> None:
        start = time.perf_counter()
        rows = next(self.batches)
        enc = pad_batch([ids for ids, _ in rows], self.pad)
        width = enc["input_ids"].shape[1]
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in rows])
        loss = self.model(**enc, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.times.append(time.perf_counter() - start)


def make_data(path: Path, n_examples: int) -> None:
    """Blocksworld problems of 4-6 blocks and 2-6 steps (the paper's mix of lengths)."""
    per_cell = -(-n_examples // 9)
    cfg = resolve_config("paper", levels=[1, 2, 3], blocks=[4, 5, 6], train=per_cell, test=0)
    examples = [ex for exs in generate_dataset(cfg).values() for ex in exs]
    write_examples(path, examples[:n_examples])


def make_preferences_data(path: Path, n_examples: int) -> None:
    """The preferences cpu preset's training decisions (mirrored), as `train` reads them."""
    from reasonlens.studies.preferences.data import make_data
    from reasonlens.studies.preferences.presets import PRESETS

    make_data(PRESETS["cpu"], SEED, load_tokenizer(MODEL), path.parent / "prefs")
    lines = (path.parent / "prefs" / "train.jsonl").read_text().splitlines()[:n_examples]
    path.write_text("".join(x + "\n" for x in lines))


def run_both(data: Path, out: Path, batches, steps: int, batch: int) -> tuple[Interleaved, dict]:
    clock = Interleaved(BareLoop(batches, steps))
    config = TrainConfig(
        data=[str(data)],
        model=MODEL,
        method="full",
        max_steps=steps,
        batch_size=batch,
        learning_rate=LR,
        seed=SEED,
        save_steps=10_000,
        device="cpu",
        dtype="float32",
    )
    result = train(config, out, progress=False, callbacks=[clock])
    return clock, result.results


def bare_batches(data: Path, batch: int, steps: int) -> tuple[list, list[int]]:
    """The batches reasonlens' sampler yields in its first epoch, as (input_ids, labels) rows,
    and every example's length in file order."""
    pairs, _ = read_pairs([data])
    tokenized = tokenize_pairs(load_tokenizer(MODEL), pairs, max_length=1024)
    lengths = [len(t.input_ids) for t in tokenized]
    order = grouped_order(lengths, batch, SEED, epoch=0)
    rows = [(tokenized[i].input_ids, tokenized[i].labels) for i in order]
    return [rows[i : i + batch] for i in range(0, batch * steps, batch)], lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (plus one warm-up)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    parser.add_argument("--task", choices=("blocksworld", "preferences"), default="blocksworld")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, batch = args.steps + 1, args.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bw.jsonl"
        (make_preferences_data if args.task == "preferences" else make_data)(data, steps * batch)
        batches, lengths = bare_batches(data, batch, steps)
        real = [sum(len(ids) for ids, _ in b) for b in batches]
        timed_tokens = sum(real[1:])  # the warm-up step is not timed

        t0 = time.perf_counter()
        clock, results = run_both(data, Path(tmp) / "run", batches, steps, batch)
        wall = time.perf_counter() - t0
    ours, bare = clock.ours[1:], clock.bare.times[1:]  # the first step of each is a warm-up

    ours_tps = timed_tokens / sum(ours)
    bare_tps = timed_tokens / sum(bare)
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1)).tolist()
    grouped = grouped_order(lengths, batch, SEED)
    report = {
        "model": MODEL,
        "task": args.task,
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "timed_steps": len(ours),
        "tokens_per_timed_step": round(timed_tokens / len(ours), 1),
        "reasonlens_tokens_per_s": round(ours_tps, 1),
        "bare_loop_tokens_per_s": round(bare_tps, 1),
        "ratio": round(ours_tps / bare_tps, 3),
        "reasonlens_step_s": [round(x, 2) for x in ours],
        "bare_step_s": [round(x, 2) for x in bare],
        "median_step_ratio": round(statistics.median(bare) / statistics.median(ours), 3),
        # what the trainer counted on the batches it trained on, what the same order gives
        # on paper (they must agree: same batches), and what random batches would waste
        "padding_fraction_measured": round(results["padding_fraction"], 4),
        "padding_fraction_grouped_order": round(padding_fraction(lengths, grouped, batch), 4),
        "padding_fraction_random_batches": round(padding_fraction(lengths, shuffled, batch), 4),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(report, indent=2))
    print(
        f"\ntokens/s: reasonlens {ours_tps:.1f}, bare loop {bare_tps:.1f}, "
        f"ratio {ours_tps / bare_tps:.3f} (target >= 0.9); "
        f"padding {results['padding_fraction']:.1%} (target <= 10%)"
    )


if __name__ == "__main__":
    main()

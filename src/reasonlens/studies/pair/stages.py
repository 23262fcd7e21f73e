"""The pair's stages: data (warm-up, training and held-out problems, disjoint), an optional
SFT warm-up, the distilled arm (SFT on the teacher's solutions), the RL arm (GRPO on the same
prompts), and the evaluation of every model on the held-out problems with bootstrap CIs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from reasonlens.runs import Stage
from reasonlens.studies.base import Settings
from reasonlens.studies.kit import BASE, analysis_stage, base_inputs, train_stage, weights_of
from reasonlens.studies.pair.presets import PairPreset, TaskPlan

#: the task option's names -> registered task names
TASK_NAMES = {"blocksworld": "blocksworld", "maze": "backtracking"}
#: the verdict that counts as solving a problem, per task
SOLVED = {"blocksworld": "goal_reached", "backtracking": "solved"}
BOOTSTRAP = 2000


def plan_of(preset: PairPreset, settings: Settings) -> tuple[str, TaskPlan]:
    task = settings.option("task")
    return task, preset.tasks[task]


def make_data(task: str, plan: TaskPlan, seed: int, directory: Path) -> dict[str, int]:
    """warmup.jsonl, train.jsonl, test.jsonl: distinct problems, the three sets disjoint."""
    directory.mkdir(parents=True, exist_ok=True)
    n_pool = plan.n_warmup + plan.n_train
    if task == "blocksworld":
        from reasonlens.tasks.blocksworld.dataset import PRESETS, DatasetConfig, generate_dataset
        from reasonlens.tasks.blocksworld.files import write_examples

        base, k = PRESETS["paper"], len(plan.cells)
        counts = tuple((lv, b, -(-n_pool // k), -(-plan.n_test // k)) for lv, b in plan.cells)
        config = DatasetConfig(
            preset="paper",
            seed=seed,
            format=base.format,
            slots=base.slots,
            colors=base.colors,
            levels=tuple(sorted({lv for lv, _ in plan.cells})),
            blocks=tuple(sorted({b for _, b in plan.cells})),
            counts=counts,
        )
        files = generate_dataset(config)
        pool = [e for name, ex in sorted(files.items()) if "_train" in name for e in ex]
        test = [e for name, ex in sorted(files.items()) if "_test" in name for e in ex]
        random.Random(seed).shuffle(pool)
        random.Random(seed + 1).shuffle(test)
        parts = {
            "warmup": pool[: plan.n_warmup],
            "train": pool[plan.n_warmup : n_pool],
            "test": test[: plan.n_test],
        }
        for name, examples in parts.items():
            if examples:
                write_examples(directory / f"{name}.jsonl", examples)
    else:
        from reasonlens.tasks.backtracking.traces import (
            TraceConfig,
            generate_traces,
            to_record,
            write_records,
        )

        traces = generate_traces(n_pool + plan.n_test, seed, TraceConfig(rooms=plan.rooms))
        cuts = {"warmup": (0, plan.n_warmup), "train": (plan.n_warmup, n_pool)}
        cuts["test"] = (n_pool, n_pool + plan.n_test)
        parts = {}
        for name, (lo, hi) in cuts.items():
            parts[name] = traces[lo:hi]
            records = [to_record(t, f"{name}-{i}", name) for i, t in enumerate(traces[lo:hi])]
            if records:
                write_records(directory / f"{name}.jsonl", records)
    return {name: len(items) for name, items in parts.items()}


def stages(preset: PairPreset, settings: Settings) -> list[Stage]:
    task, plan = plan_of(preset, settings)
    start = "warmup" if plan.warmup is not None else BASE

    def data(directory: Path, upstream: dict) -> None:
        counts = make_data(task, plan, settings.seed, directory)
        (directory / "counts.json").write_text(json.dumps(counts))

    def file(name: str):
        return lambda up: [str(Path(up["data"]["directory"]) / f"{name}.jsonl")]

    def read_data(directory: Path) -> dict[str, Any]:
        counts = json.loads((directory / "counts.json").read_text())
        return {"directory": str(directory), "counts": counts}

    data_inputs = {"task": task, "n": [plan.n_warmup, plan.n_train, plan.n_test]}
    data_inputs.update(cells=plan.cells, rooms=plan.rooms)
    out = [Stage("data", data_inputs, data, read_data)]
    depends_start = weights_of(start_weights=start) if start != BASE else None
    if plan.warmup is not None:
        warm = {"warmup": plan.warmup.to_dict()}
        out.append(train_stage("warmup", plan.warmup, settings, file("warmup"), warm))
    out.append(
        train_stage(
            "distilled",
            plan.distil,
            settings,
            file("train"),
            {"distil": plan.distil.to_dict()},
            start=start,
            depends=depends_start,
        )
    )
    out.append(
        train_stage(
            "rl",
            plan.rl,
            settings,
            file("train"),
            {"rl": plan.rl.to_dict()},
            start=start,
            depends=depends_start,
        )
    )
    roles = [BASE, *(["warmup"] if plan.warmup is not None else []), "distilled", "rl"]

    def evaluate(directory: Path, upstream: dict) -> dict:
        return evaluate_models(task, plan, settings, upstream, roles, directory)

    trained = {r: r for r in roles if r != BASE}
    out.append(
        analysis_stage(
            "eval",
            {
                **base_inputs(settings),
                "eval_batch": plan.eval_batch,
                "bootstrap": BOOTSTRAP,
                "eval_samples": plan.eval_samples,
                "temperature": plan.rl.temperature,
            },
            evaluate,
            depends=weights_of(**{f"{r}_weights": r for r in trained}),
        )
    )
    return out


def evaluate_models(
    task: str, plan: TaskPlan, settings: Settings, upstream: dict, roles: list[str], folder: Path
) -> dict:
    """Every model greedy on the held-out problems: the task's rates, the reward the RL arm
    was trained on, the solve rate, each with a 95% bootstrap CI over problems, and paired
    differences (the same resamples) between the arms and the warm-up model. The trained
    models are also sampled (``plan.eval_samples`` a problem at the RL arm's temperature): the
    mean reward and solve rate of a problem's samples, what GRPO optimises."""
    import numpy as np

    from reasonlens.analyses.stats import paired, percentile_interval, resample_indices
    from reasonlens.evaluate.task_eval import evaluate_task, load_items, sample_task
    from reasonlens.studies.kit import load_role
    from reasonlens.tasks import get_task
    from reasonlens.train.rewards import REWARDS

    name = TASK_NAMES[task]
    the_task = get_task(name)
    items = load_items(the_task, [Path(upstream["data"]["directory"]) / "test.jsonl"])
    reward_fn = REWARDS[name]
    idx = resample_indices(len(items), BOOTSTRAP, settings.seed)
    models, draws = {}, {}
    for role in roles:
        model = load_role(role, settings, upstream, label=role)
        result = evaluate_task(
            model,
            the_task,
            items,
            mode="generate",
            batch_size=plan.eval_batch,
            max_new_tokens=plan.max_new_tokens,
            progress=settings.progress,
        )
        rewards = np.array(
            [
                reward_fn(it, rec["output"], rec["verdicts"])
                for it, rec in zip(items, result.examples, strict=True)
            ]
        )
        solved = np.array([bool(rec["verdicts"][SOLVED[name]]) for rec in result.examples], float)
        entry = {"n": len(items), "rates": {m: result.totals[m] for m in the_task.metrics}}
        measures = [("reward", rewards), ("solved", solved)]
        if role != BASE and plan.eval_samples:
            sampled = sample_task(
                model,
                the_task,
                items,
                plan.eval_samples,
                plan.rl.temperature,
                max_new_tokens=plan.max_new_tokens,
                batch_size=plan.eval_batch * plan.eval_samples,
                seed=settings.seed,
            )
            per = [
                [(reward_fn(it, o, v), bool(v[SOLVED[name]])) for o, v in row]
                for it, row in zip(items, sampled, strict=True)
            ]
            scores = np.array(per, dtype=float)  # [problems, samples, (reward, solved)]
            measures += [
                ("sampled_reward", scores[..., 0].mean(1)),
                ("sampled_solved", scores[..., 1].mean(1)),
            ]
            entry["samples"] = {
                "per_problem": plan.eval_samples,
                "temperature": plan.rl.temperature,
            }
            with (folder / f"samples_{role}.jsonl").open("w", encoding="utf-8") as handle:
                for it, row in zip(items, sampled, strict=True):
                    handle.write(json.dumps({"id": it.id, "outputs": [o for o, _ in row]}) + "\n")
        for key, values in measures:
            res = values[idx].mean(axis=1)
            low, high = percentile_interval(res)
            entry[key] = {"value": float(values.mean()), "low": float(low), "high": float(high)}
            draws[(role, key)] = res
        entry["timings"] = result.timings
        models[role] = entry
        with (folder / f"examples_{role}.jsonl").open("w", encoding="utf-8") as handle:
            for rec, r in zip(result.examples, rewards, strict=True):
                handle.write(json.dumps({**rec, "reward": float(r)}, ensure_ascii=False) + "\n")
        del model
    ref = "warmup" if "warmup" in roles else BASE
    comparisons = {}
    pairs = [
        ("rl", ref, "reward"),
        ("distilled", ref, "solved"),
        ("rl", ref, "solved"),
        ("distilled", ref, "reward"),
        ("rl", "distilled", "reward"),
        ("rl", "distilled", "solved"),
    ]
    if plan.eval_samples:  # the base model is not sampled
        pairs += [(a, b, f"sampled_{k}") for a, b, k in pairs if BASE not in (a, b)]
    for a, b, key in pairs:
        diff = paired(draws[(a, key)], draws[(b, key)])
        value = models[a][key]["value"] - models[b][key]["value"]
        comparisons[f"{a}-{b}:{key}"] = {
            "a": a,
            "b": b,
            "measure": key,
            "value": value,
            "low": diff.low,
            "high": diff.high,
            "share_a_higher": diff.share_a_higher,
        }
    return {"task": name, "reference": ref, "models": models, "comparisons": comparisons}

"""The pair's report: every model on the held-out problems side by side (reward and solve
rate with 95% CIs), the targets as claims on paired differences, the GRPO curve; and
pair.json, which says which model is which."""

from __future__ import annotations

from typing import Any

from reasonlens.report.builder import Bullets, Claim, Claims, Figure, Report, Section, Table
from reasonlens.report.verdicts import Estimate, by_interval
from reasonlens.runs import RunDir

PAIR_FILE = "pair.json"
NAMES = {"base": "base", "warmup": "warm-up (SFT)", "distilled": "distilled", "rl": "RL (GRPO)"}


def pair_record(run: RunDir, results: dict) -> dict[str, Any]:
    roles = results["eval"]["models"]
    return {
        "task": results["task"],
        "base": run.config["model"],
        "start": "warmup" if "warmup" in roles else "base",
        "models": {r: (run.config["model"] if r == "base" else str(run.file(r))) for r in roles},
        "distilled": str(run.file("distilled")),
        "rl": str(run.file("rl")),
        "warmup": str(run.file("warmup")) if "warmup" in roles else None,
        "held_out": str(run.file("data") / "test.jsonl"),
        "train": str(run.file("data") / "train.jsonl"),
        "problems": results["problems"],
        "same": "base, training prompts and number of training problems",
    }


def _ci(entry: dict) -> str:
    return Estimate.of(entry).show()


def pair_report(run: RunDir, results: dict, stages: dict) -> Report:
    run.write_json(PAIR_FILE, pair_record(run, results))
    ev = results["eval"]
    models, comps = ev["models"], ev["comparisons"]
    ref = ev["reference"]
    metrics = list(next(iter(models.values()))["rates"])
    sampled = next((m["samples"] for m in models.values() if "samples" in m), None)
    extra = (
        [
            f"reward, {sampled['per_problem']} samples at T={sampled['temperature']:g}",
            "solved, sampled",
        ]
        if sampled
        else []
    )
    rows = [
        [NAMES.get(role, role), _ci(m["reward"]), _ci(m["solved"])]
        + ([_ci(m.get("sampled_reward")), _ci(m.get("sampled_solved"))] if sampled else [])
        + [m["rates"][k] for k in metrics]
        for role, m in models.items()
    ]
    table = Table(["model", "reward, greedy [95% CI]", "solved, greedy", *extra, *metrics], rows)

    def claim(key: str, text: str) -> Claim:
        c = comps[key]
        est = Estimate(c["value"], c["low"], c["high"])
        return Claim(text, est.show(), by_interval(est))

    ref_name = NAMES[ref]
    claims = [
        claim(f"rl-{ref}:reward", f"GRPO raises the held-out reward above the {ref_name} model's"),
        claim(
            f"distilled-{ref}:solved",
            f"distillation raises the held-out solve rate above the {ref_name} model's "
            "(target: at least equal)",
        ),
        claim("rl-distilled:reward", "the RL arm earns more reward than the distilled arm"),
    ]
    if f"rl-{ref}:sampled_reward" in comps:
        how = f"{sampled['per_problem']} samples a problem at T={sampled['temperature']:g}"
        claims.insert(
            1,
            claim(
                f"rl-{ref}:sampled_reward",
                f"GRPO raises the held-out expected reward ({how}, as in training) above the "
                f"{ref_name} model's",
            ),
        )
    rl = stages["rl"]["results"]
    curve = Bullets(
        [
            f"GRPO: {rl['steps']} steps x {rl['prompts_per_step']} prompts x "
            f"{rl['num_generations']} completions; reward {rl['reward_first_fifth']:.3f} "
            f"(first fifth) -> {rl['reward_last_fifth']:.3f} (last fifth)",
            f"groups with zero reward variance (no learning signal): "
            f"{rl['zero_variance_share']:.0%} (mean over steps)",
            f"{rl['steps_per_minute']:.2f} steps/min, {rl['generate_share']:.0%} of a step "
            "generating",
        ]
    )
    return Report(
        title=f"RL-trained vs distilled pair ({results['task']})",
        intro=[
            "One base model, two arms trained on the same prompts and number of problems: the "
            "distilled arm by SFT on the teacher's solutions, the RL arm by GRPO on the task's "
            f"verifier, both from the {ref_name} model. `pair.json` says which model is which."
        ],
        sections=[
            Section(
                "Held-out problems",
                [table, Claims(claims, reference=None, control=None, rule="interval")],
            ),
            Section("GRPO", [curve, Figure("rl/reward.png", "GRPO reward curve")]),
        ],
        data=f"problems: {results['problems']}",
    )

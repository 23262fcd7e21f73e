"""The directions study's report: per model, where the direction is chosen and what it costs,
then each claim beside its control; with two models, the comparison; one summary PNG."""

from __future__ import annotations

from typing import Any

from reasonlens.report.builder import Claim, Claims, Figure, Report, Section, Table
from reasonlens.report.verdicts import Estimate, Verdict, by_interval, by_support, not_measurable
from reasonlens.runs import RunDir

SUMMARY_PNG = "summary.png"


def _verdict(v: dict) -> Verdict:
    return Verdict(v["word"], v.get("why", ""), v.get("label"))


def _alpha_row(steer: dict, alpha: float) -> dict:
    return next(r for r in steer["per_alpha"] if r["alpha"] == alpha)


def doses_line(steer: dict) -> str:
    """How the sweep's alphas were chosen (the KL budget on validation prompts)."""
    g = steer.get("dose_grid")
    if not g:
        return f"Alphas: {', '.join(f'{a:g}' for a in steer['alphas'])} (fixed)."
    kls = ", ".join(f"{a:g}: {max(k):.3g}" for a, k in zip(g["candidates"], g["kl"], strict=True))
    within = any(max(k) <= g["kl_max"] for k in g["kl"])
    return (
        f"Alphas {', '.join(f'{a:g}' for a in g['alphas'])}: up to the largest candidate whose "
        f"steering (either sign) moves the next token on {_count(g.get('n_prompts'))}validation "
        f"control prompts by a mean KL of at most {g['kl_max']:g} nats"
        + ("" if within else " (none does: the smallest is used)")
        + f"; KL per candidate: {kls}."
        + _controls_line(steer)
    )


def _count(n: int | None) -> str:
    return f"{n} " if n else ""


def _controls_line(steer: dict) -> str:
    """Where the controls were swept, when not at every dose (the preset's choice)."""
    at = steer.get("settings", {}).get("control_alphas")
    if not at or len(at) == len(steer["alphas"]):
        return ""
    return (
        f" The controls were swept at alphas {', '.join(f'{a:g}' for a in at)} only (the ends, "
        "where the verdicts are judged; – elsewhere), the direction at every alpha."
    )


def _dose_table(steer: dict, metric: str, control: str) -> Table:
    """A steering sweep per alpha: the metric for the direction, its random controls and the
    named control vector, the completion length and the KL on control prompts."""
    return Table(
        [
            "alpha",
            f"{metric} (direction)",
            f"{metric} (random mean)",
            f"{metric} ({control})",
            "new tokens",
            "KL on control prompts",
        ],
        [
            [
                r["alpha"],
                Estimate.of(r["direction"]["metric"]).show(),
                Estimate.of(r["random_mean"]["metric"]).show(),
                Estimate.of(r.get(control, {}).get("metric")).show(),
                Estimate.of(r["direction"]["length"]).show(1),
                Estimate.of(r["direction"].get("kl")).show(4),
            ]
            for r in steer["per_alpha"]
        ],
    )


def _model_section(role: str, m: dict) -> Section:
    chosen, conc, steer, abl = m["chosen"], m["concentration"], m["steering"], m["ablation"]
    top = max(steer["alphas"])
    top_row = _alpha_row(steer, top)
    where = Table(
        ["model", "chosen layer", "site", "why", "norm", f"KL on control prompts (alpha {top:g})"],
        [
            [
                m["label"],
                chosen["layer"],
                chosen["site"],
                m["selection"].get("fallback") or m["selection"].get("why", ""),
                f"{chosen['norm']:.3f}",
                Estimate.of(top_row["direction"].get("kl")).show(4),
            ]
        ],
    )
    mid = conc["middle"]
    claims = [
        Claim(
            f"the direction's addition effect peaks in the middle third of layers "
            f"({mid[0]:.1f}-{mid[1]:.1f})",
            f"peak at layer {conc['peak_layer']}; {conc['share_peak_in_middle']:.0%} of resamples",
            by_support(
                conc["share_peak_in_middle"],
                conc["share_peak_in_middle_shuffled"],
                "the shuffled-label direction",
            ),
            control=f"shuffled labels: {conc['share_peak_in_middle_shuffled']:.0%}",
        ),
        Claim(
            f"steering along it raises the solve rate at the largest alpha ({top:g})",
            Estimate.of(top_row["direction"]["metric"]).show(),
            _judged(steer, top, "solved"),
            control=f"random: {Estimate.of(top_row['random_mean']['metric']).show()}; "
            f"shuffled: {Estimate.of(top_row.get('shuffled labels', {}).get('metric')).show()}",
        ),
        Claim(
            "ablating it lowers the computation score (logit answer - logit first number)",
            "effect " + Estimate.of(abl["vectors"]["direction"]["effect"]).show(),
            _verdict(abl["versus_random"]),
            control="random mean effect "
            + Estimate.of(abl.get("random_mean_effect")).show()
            + "; shuffled labels "
            + Estimate.of(abl["vectors"].get("shuffled labels", {}).get("effect")).show(),
        ),
    ]
    ranges = m.get("layer_ablation")
    if ranges is not None:
        claims.append(_ranges_claim(ranges))
    patching = m.get("patching")
    if patching is not None:
        claims.append(_patching_claim(patching))
    dose = _dose_table(steer, "solved", "shuffled labels")
    layers = Table(
        ["layer", "addition effect", "shuffled-label addition", "ablation score", "KL (ablated)"],
        [
            [x, f"{a:.3f}", f"{s:.3f}", f"{b:.3f}", f"{k:.4f}"]
            for x, a, s, b, k in zip(
                conc["layers"],
                conc["addition_effect"],
                conc["addition_effect_shuffled"],
                conc["ablation_score"],
                conc["kl"],
                strict=True,
            )
        ],
    )
    return Section(
        f"{m['label']} ({role})",
        [
            where,
            Claims(claims, reference=None, control="control"),
            "Steering dose-response on the test prompts (checker: the first number or word "
            "written equals the answer), 95% bootstrap intervals over prompts. "
            + doses_line(steer),
            dose,
            *_ranges_blocks(ranges),
            *_patching_blocks(patching),
            "Candidate layers on the validation prompts (addition: computation score on control "
            "prompts with the raw direction added, minus no intervention):",
            layers,
            Figure(f"{role}/steering.png", f"steering sweep, {m['label']}"),
        ],
    )


def _ranges_claim(r: dict) -> Claim:
    layers = r["chosen"]["layers"]
    row = r["reasoning"]["windows"][r["chosen"]["index"]]
    ctrl = r["control"]["windows"][r["chosen"]["index"]]
    est = Estimate.of(r["specificity"])
    return Claim(
        f"mean-ablating layers {layers[0]}-{layers[-1]} (the most harmful window on validation "
        "prompts) lowers the computation score more than the control prompts' copy score",
        f"computation score {Estimate.of(row['effect']).show()}; drop beyond the control's "
        f"{est.show()}",
        by_interval(est),
        control=f"copy score on control prompts {Estimate.of(ctrl['effect']).show()}",
    )


def _patching_claim(r: dict) -> Claim:
    text = (
        "patching the last token's residual stream from the reasoning run into its control "
        "run restores the computation score"
    )
    if "not_measurable" in r:
        return Claim(text, "–", not_measurable(r["not_measurable"]))
    x = r["layer"]
    cells = (r["restored"][x], r["restored_mismatched"][x])
    tol = 1e-4 * max(1.0, abs(r["clean_minus_corrupt"]))  # float noise of batched forwards
    if all(abs(c[k] or 0.0) < tol for c in cells for k in ("value", "low", "high")):
        why = (
            f"at layer {x} neither patch changes the score at all (the last token's residual "
            "stream there holds nothing yet from the tokens where the prompts differ)"
        )
        return Claim(f"{text} at the direction's layer ({x})", "0", not_measurable(why))
    return Claim(
        f"{text} at the direction's layer ({x}) beyond a mismatched source",
        f"restored {Estimate.of(r['restored'][x]).show()} of a clean-corrupt gap of "
        f"{r['clean_minus_corrupt']:.3f}; beyond the mismatched source "
        f"{Estimate.of(r['beyond_mismatched']).show()}",
        by_interval(Estimate.of(r["beyond_mismatched"])),
        control=f"another item's reasoning run: {Estimate.of(r['restored_mismatched'][x]).show()}",
    )


def _patching_blocks(r: dict | None) -> list:
    if r is None or "not_measurable" in r:
        return []
    rows = [
        [i, Estimate.of(a).show(), Estimate.of(b).show()]
        for i, (a, b) in enumerate(zip(r["restored"], r["restored_mismatched"], strict=True))
    ]
    out = [
        f"Activation patching ({r['site']}, {r['position']}; {r['n_pairs']} test pairs): the "
        "computation score restored in the control run, from its own reasoning run and from "
        "another item's:",
        Table(["layer", "restored (matched)", "restored (mismatched source)"], rows),
    ]
    paths = r.get("paths")
    if paths and "not_measurable" not in paths:
        out += [
            "Path patching (descriptive, no claim): the reasoning run with one sender taken "
            f"from its control run and reaching only {paths['receivers'][0]} (heads frozen); "
            "the change in the computation score:",
            Table(
                ["sender", "change [95% CI]", "share of the control's gap"],
                [
                    [
                        x["sender"],
                        Estimate.of(x["effect"]).show(),
                        "–"
                        if x["share_of_corrupt_gap"] is None
                        else f"{x['share_of_corrupt_gap']:.2f}",
                    ]
                    for x in paths["senders"]
                ],
            ),
        ]
    return out


def _ranges_blocks(r: dict | None) -> list:
    if r is None:
        return []
    rows = [
        [
            f"{w['layers'][0]}-{w['layers'][-1]}",
            f"{v:.3f}",
            Estimate.of(w["effect"]).show(),
            Estimate.of(c["effect"]).show(),
        ]
        for w, c, v in zip(
            r["reasoning"]["windows"], r["control"]["windows"], r["val_effect"], strict=True
        )
    ]
    return [
        f"Layer ablation over windows of {r['width']} layers (each mean-ablated, attention and "
        "MLP; effect on the score at the last token, 95% intervals over test prompts):",
        Table(
            ["layers", "validation effect", "computation score (test)", "copy score (control)"],
            rows,
        ),
    ]


def constant_sweep(steer: dict, what: str, alpha: float | None = None) -> str | None:
    """Why a sweep cannot be judged, when every condition (the direction and every control at
    every alpha, or at `alpha` only) gave the same value on every prompt (each mean equal,
    each interval of zero width): a floor or a ceiling; None otherwise."""
    every = [
        row[name]["metric"]
        for row in steer["per_alpha"]
        if alpha is None or row["alpha"] == alpha
        for name in steer["vectors"]
        if name in row
    ]
    cells = [c for c in every if c["value"] is not None]  # None: a control not swept there
    first = cells[0]["value"] if cells else None
    if first is None or any(
        (c["value"], c["low"], c["high"]) != (first, first, first) for c in cells
    ):
        return None
    n = steer["n_prompts"] * len(cells)
    where = "at every alpha" if alpha is None else f"at alpha {alpha:g}"
    if len(cells) < len(every):
        where += " swept"
    return (
        f"every chain of every condition ({n}: direction and controls {where}) has {first:g} {what}"
    )


def _judged(steer: dict, alpha: float, what: str) -> Verdict:
    """The verdict on raising `what` at `alpha` beside the random directions, or not
    measurable when every condition there sits at one value."""
    degenerate = constant_sweep(steer, what, alpha)
    return (
        not_measurable(degenerate) if degenerate else _verdict(steer["versus_random_at_max_alpha"])
    )


def _behaviour_controls(row: dict) -> str:
    """A backtracking sweep's controls at one alpha: random directions, random windows."""
    return (
        f"random: {Estimate.of(row['random_mean']['metric']).show()}; random windows: "
        f"{Estimate.of(row.get('random windows', {}).get('metric')).show()}"
    )


def _behaviour_section(role: str, m: dict) -> Section:
    """The backtracking direction of one model: where it is chosen, what steering it does to
    the behaviour (the maze checker's backtracks per chain, or 'Wait'/'Hmm' per 100 words on
    a user's chains), and what it costs on control prompts."""
    b = m["behaviour"]
    steer, chosen = b["steering"], b["chosen"]
    top = max(steer["alphas"])
    top_row = _alpha_row(steer, top)
    kl_top = Estimate.of(top_row["direction"].get("kl")).show(4)
    monotone = steer["monotone_share"]
    what = steer.get("metric", "backtracks per chain")
    degenerate = constant_sweep(steer, what)
    claims = [
        Claim(
            f"steering along the backtracking direction raises {what} at the largest alpha "
            f"({top:g})",
            Estimate.of(top_row["direction"]["metric"]).show(),
            not_measurable(degenerate)
            if degenerate
            else _verdict(steer["versus_random_at_max_alpha"]),
            control=_behaviour_controls(top_row),
        ),
        Claim(
            "the dose-response is monotone (the behaviour never falls as alpha rises, and "
            "rises overall)",
            f"{monotone:.0%} of resamples",
            not_measurable(degenerate)
            if degenerate
            else by_support(monotone, steer["monotone_share_random"], "the random directions"),
            control=f"random directions: {steer['monotone_share_random']:.0%}",
        ),
    ]
    dose = _dose_table(steer, what, "random windows")
    auc = Table(
        ["layer", "validation AUC", "random-window direction's AUC", "norm"],
        [
            [x, f"{a:.3f}", f"{c:.3f}", f"{n:.3f}"]
            for x, a, c, n in zip(
                b["layers"],
                b["val_auc"],
                b["val_auc_random_windows"],
                b["direction_norm"],
                strict=True,
            )
        ],
    )
    n = b["n_traces"]
    return Section(
        f"{m['label']} ({role}): the backtracking direction",
        [
            f"From {n['train']} {b.get('source', 'gold maze search traces')} "
            f"({b['n_windows']} backtracks), the mean residual over the {b['window']} tokens "
            "before each backtrack minus the mean over every token, per candidate layer; chosen "
            f"on {n['val']} validation chains by the AUC with which its projection separates "
            f"the window tokens from the rest: layer {chosen['layer']} (AUC "
            f"{chosen['val_auc']:.3f}, norm {chosen['norm']:.3f}; KL on control prompts at alpha "
            f"{top:g}: {kl_top}). Steered on {n['test']} held-out prompts, scored by {what} "
            f"(in the held-out gold chains: {b['gold_backtracks_per_chain']:.2f}).",
            Claims(claims, reference=None, control="control"),
            doses_line(steer),
            dose,
            auc,
            Figure(f"{role}/steering_backtracking.png", f"backtracking steering, {m['label']}"),
        ],
    )


def _three_models(models: list[str], t: dict) -> tuple[Claim, Table | None]:
    """The claim that the two arms' directions differ more from each other than either from
    the model both started from, at the judged layer (the record says by which rule), and the
    per-layer table."""
    a, b = models
    text = (
        f"the {b} model's direction differs from the {a} model's more than either from "
        f"the {t['reference']} model"
    )
    if "not_measurable" in t:
        return Claim(text, "–", not_measurable(t["not_measurable"])), None
    row = t["per_layer"][t["layer"]]
    est = Estimate(row["difference"], row["low"], row["high"])
    rule = t.get("layer_rule", "the first arm's chosen layer")  # runs before the rule was kept
    claim = Claim(
        f"{text} (layer {t['layer']}: {rule})",
        f"1 - cos: {a}-{b} {row['arms']:.4f}, {a}-start {row['first_arm_to_start']:.4f}, "
        f"{b}-start {row['second_arm_to_start']:.4f}; difference {est.show(4)}",
        by_interval(est),
        control=f"split-half divergence of one model (noise floor): {row['split_half']:.4f}",
    )
    table = Table(
        ["layer", f"1 - cos {a}-{b}", f"{a}-start", f"{b}-start", "difference [95% CI]",
         "split-half"],
        [
            [
                r["layer"],
                f"{r['arms']:.4f}",
                f"{r['first_arm_to_start']:.4f}",
                f"{r['second_arm_to_start']:.4f}",
                Estimate(r["difference"], r["low"], r["high"]).show(4),
                f"{r['split_half']:.4f}",
            ]
            for r in t["per_layer"]
        ],
    )  # fmt: skip
    return claim, table


def _behaviour_transfer(t: dict) -> tuple[list[Claim], list]:
    """Ward et al.'s transfer: a model's backtracking direction steering another model (and,
    with a pair, the start model's direction steering the start model itself, where Ward et
    al.'s base did not respond)."""
    what = "the backtracking direction transfers"
    if "not_measurable" in t:
        return [Claim(what, "–", not_measurable(t["not_measurable"]))], []
    claims, blocks = [], []
    source = t.get("source")
    if source is not None:
        chosen = source["chosen"]
        blocks.append(
            f"Backtracking direction of {source['model']} (the model both arms started "
            f"from), chosen by the rule each model's own is: layer {chosen['layer']} (validation "
            f"AUC {chosen['val_auc']:.3f}, norm {chosen['norm']:.3f}). Ward et al. found a "
            "base model's direction makes the distilled model backtrack but not the base itself."
        )
    for key, s in t["sweeps"].items():
        top = max(s["alphas"])
        row = _alpha_row(s, top)
        metric = s.get("metric", "backtracks per chain")
        own = " (its own model)" if s.get("own") else ""
        claims.append(
            Claim(
                f"{key}{own}: the backtracking direction (layer {s['source_layer']} -> "
                f"{s['target_layer']}) raises {metric} at alpha {top:g}",
                Estimate.of(row["direction"]["metric"]).show(),
                _judged(s, top, metric),
                control=_behaviour_controls(row),
            )
        )
        blocks += [f"{key}{own}. " + doses_line(s), _dose_table(s, metric, "random windows")]
    return claims, blocks


def _comparison_section(c: dict) -> Section:
    blocks: list[Any] = []
    claims = []
    cos = c.get("cosines", {})
    if "not_measurable" in cos:
        claims.append(
            Claim(
                "the two models' directions align beyond random",
                "–",
                not_measurable(cos["not_measurable"]),
            )
        )
    else:
        rows = []
        for i, layer in enumerate(cos["layers"]):
            rows.append(
                [
                    layer,
                    Estimate(cos["cosine"][i], cos["low"][i], cos["high"][i]).show(),
                    f"{cos['shuffled_labels'][i]:.3f}",
                ]
            )
        best = max(range(len(cos["layers"])), key=lambda i: cos["low"][i])
        est = Estimate(cos["cosine"][best], cos["low"][best], cos["high"][best])
        claims.append(
            Claim(
                f"the two models' directions align beyond random (best layer {best})",
                est.show(),
                by_interval(est, threshold=cos["random_95"]),
                control=f"random 95% band |cos| < {cos['random_95']:.3f}",
            )
        )
        blocks.append(Table(["layer", "cosine [95% CI]", "shuffled-label cosine"], rows))
    transfer = c.get("transfer", {})
    if "not_measurable" in transfer:
        claims.append(
            Claim(
                "a direction transfers to the other model",
                "–",
                not_measurable(transfer["not_measurable"]),
            )
        )
    else:
        for key, t in transfer.items():
            top = max(t["alphas"])
            row = _alpha_row(t, top)
            claims.append(
                Claim(
                    f"{key}: the direction (layer {t['source_layer']} -> {t['target_layer']}) "
                    f"raises the solve rate at alpha {top:g}",
                    Estimate.of(row["direction"]["metric"]).show(),
                    _judged(t, top, "solved"),
                    control=f"random: {Estimate.of(row['random_mean']['metric']).show()}",
                )
            )
    moved = c.get("behaviour_transfer")
    if moved is not None:
        more_claims, more_blocks = _behaviour_transfer(moved)
        claims += more_claims
        blocks += more_blocks
    three = c.get("three_models")
    if three is not None:
        claim, table = _three_models(c["models"], three)
        claims.append(claim)
        if table is not None:
            blocks.append(table)
    cka = c.get("cka", {})
    if "not_measurable" in cka:
        blocks.append(f"CKA: not measurable ({cka['not_measurable']}).")
    else:
        diag = cka.get("diagonal") or []
        trimmed = cka.get("diagonal_without_first_and_massive") or []
        blocks.append(
            Table(
                ["layer", "CKA (all rows)", "CKA (without first/massive tokens)"],
                [
                    [i, f"{a:.3f}", f"{b:.3f}"]
                    for i, (a, b) in enumerate(zip(diag, trimmed, strict=False))
                ],
            )
        )
    return Section(
        f"Across the two models ({' vs '.join(c['models'])})",
        [Claims(claims, reference=None, control="control"), *blocks],
    )


def summary_figure(run: RunDir, results: dict) -> str:
    """Probe accuracy and logit-lens top-1 per layer, the steering dose-response, and the
    direction cosines and CKA diagonal: one PNG."""
    from reasonlens.plots import new_figure, save_figure

    fig = new_figure(figsize=(12, 7))
    axes = fig.subplots(2, 2).ravel()
    for role, m in results["per_model"].items():
        layers = list(range(m["n_layers"]))
        line = axes[0].plot(layers, m["probe"]["accuracy"], marker=".", label=m["label"])[0]
        if m["probe"]["shuffled"]:
            axes[0].plot(layers, m["probe"]["shuffled"], "--", color=line.get_color())
        lens = m["logit_lens"]["reasoning (answer)"]["top1"]
        axes[1].plot(layers, lens, marker=".", label=f"{m['label']}: answer")
        ctrl = m["logit_lens"]["control (first number)"]["top1"]
        axes[1].plot(layers, ctrl, ":", label=f"{m['label']}: first number (control)")
        steer = m["steering"]
        ys = [r["direction"]["metric"]["value"] for r in steer["per_alpha"]]
        rs = [  # the random controls where they were swept (every dose, or the ends)
            (r["alpha"], r["random_mean"]["metric"]["value"])
            for r in steer["per_alpha"]
            if r["random_mean"]["metric"]["value"] is not None
        ]
        line = axes[2].plot(
            steer["alphas"], ys, marker="o", label=f"{m['label']} (layer {m['chosen']['layer']})"
        )[0]
        axes[2].plot(
            *zip(*sorted(rs), strict=True),
            "--",
            color=line.get_color(),
            label=f"{m['label']}: random",
        )
        del role
    axes[0].set_title("probe accuracy per layer (val; dashed: shuffled labels)", fontsize=9)
    axes[1].set_title("logit lens: share of prompts with the target top-1", fontsize=9)
    axes[2].set_title("steering: solve rate against alpha", fontsize=9)
    c = results.get("comparison") or {}
    cos, cka = c.get("cosines", {}), c.get("cka", {})
    if cos.get("cosine"):
        axes[3].plot(cos["layers"], cos["cosine"], marker=".", label="direction cosine")
        axes[3].axhline(cos["random_95"], color="grey", ls=":", label="random 95%")
    if cka.get("diagonal"):
        axes[3].plot(range(len(cka["diagonal"])), cka["diagonal"], marker=".", label="CKA diagonal")
    if not c:
        axes[3].text(0.5, 0.5, "one model: no comparison", ha="center", transform=axes[3].transAxes)
    axes[3].set_title("across models: direction cosine and CKA per layer", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, run.path / SUMMARY_PNG, dpi=120)
    return SUMMARY_PNG


def directions_report(run: RunDir, results: dict, stages: dict) -> Report:
    png = summary_figure(run, results)
    sections = []
    for role, m in results["per_model"].items():
        sections.append(_model_section(role, m))
        if m.get("behaviour"):
            sections.append(_behaviour_section(role, m))
    if results.get("comparison"):
        sections.append(_comparison_section(results["comparison"]))
    pr = results["prompts"]
    src = pr["source"]
    data = (
        f"contrast problems: {pr['train']} train / {pr['val']} validation / {pr['test']} test "
        f"({src['kind']}{', ' + str(src.get('path')) if src.get('path') else ''}; "
        f"{src.get('dropped', 0)} items dropped). Reasoning prompt: 'Give the final answer.'; "
        "control: 'Give the first number in the question.' (same question)."
    )
    return Report(
        title="Reasoning directions",
        intro=[
            "Difference-in-means directions between reasoning and matched control prompts at "
            "every layer's residual stream (last prompt token); the layer chosen on validation "
            "prompts by Arditi et al.'s rule (lowest ablation score among candidates with KL <= "
            "the limit, not in the last 20% of layers); effects measured on test prompts beside "
            "random directions of equal norm and the shuffled-label direction.",
        ],
        headline=[Figure(png, "probe and logit lens per layer, steering, cross-model similarity")],
        sections=sections,
        data=data,
    )

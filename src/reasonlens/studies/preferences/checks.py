"""What the preferences study asks of its settings before anything is written: the preset has
the scenarios a confidence interval needs (a smoke preset excepted) and they exist, and the
model's tokenizer can train and read a decision (fast, with an end token, and "A" and "B"
single tokens at the answer position of the study's prompts)."""

from __future__ import annotations

from reasonlens.errors import UserError
from reasonlens.studies.base import Settings


def check_settings(settings: Settings) -> None:
    from reasonlens.evaluate.choice import choice_tokens
    from reasonlens.models import load_tokenizer
    from reasonlens.studies.preferences.data import choose
    from reasonlens.studies.preferences.presets import MIN_CI_SCENARIOS, PRESETS
    from reasonlens.tasks.preferences import trials as T
    from reasonlens.tasks.preferences.catalogue import load_catalogue

    p = PRESETS[settings.preset]
    if p.n_instilled < MIN_CI_SCENARIOS and not p.smoke:
        raise UserError(
            f"preset {p.name!r} instils {p.n_instilled} scenarios; a confidence interval over "
            f"scenarios needs at least {MIN_CI_SCENARIOS}"
        )
    instilled, native = choose(p)
    tokenizer = load_tokenizer(settings.model)
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"the tokenizer of {settings.model!r} is not a fast tokenizer: training reads "
            "token offsets to put the loss on the answer only"
        )
    if tokenizer.eos_token_id is None:
        raise UserError(
            f"the tokenizer of {settings.model!r} has no end token: the model could not learn "
            "to stop after its answer"
        )
    catalogue = load_catalogue()
    prompts = []
    for name in (instilled + native)[:4]:
        s = catalogue[name]
        trial = T.draw_trials(s, T.draw_targets(s, settings.seed), 1, settings.seed, "test")[0]
        prompts.append(T.render(tokenizer, T.decision_prompt(s, trial.a, trial.b)))
    try:
        choice_tokens(tokenizer, prompts)
    except UserError as err:
        raise UserError(f"model {settings.model!r}: {err}") from None

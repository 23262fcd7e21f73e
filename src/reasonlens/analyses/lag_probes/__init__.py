"""Lag probes: does the activation at token t predict a label (backtracking) at t + lag?

Typical use, with labels.jsonl rows and an activation store of the same chains::

    from reasonlens.analyses.lag_probes import (
        StoreChains, fit_lag_probes, labels_from_rows, shuffled_chain_labels,
    )
    source = StoreChains(store, ["layers.6.resid_post", ...], labels_from_rows(rows),
                         ids=[r.id for r in rows], input_ids=[r.input_ids for r in rows])
    result = fit_lag_probes(source)                    # lags -8..48 by 4, every layer at once
    result.test["auc"].value                           # [layers, lags], .low / .high: CI
    result.best_per_lag("auc")                         # layer chosen on validation chains
    control = fit_lag_probes(shuffled_chain_labels(source), split=result.split)
    compare(result.test, lexical.test, "auc", result.best_layers(), 0)  # paired, lag by lag

Anticipation rather than continuation: ``fit_lag_probes(source, targets="onset", lags=(4, 8))``
(a positive at +k is a span that begins in (t, t+k]; rows inside a span are left out), and a
null as a distribution: ``permutation_null(source, config, split, result.best_layers())``.
"""

from reasonlens.analyses.lag_probes.controls import (
    BagOfTokens,
    PrefixLexical,
    TokenEmbeddings,
    bag_of_tokens_source,
    permuted_chain_labels,
    position_features,
    prefix_lexical_source,
    sentence_start_labels,
    shuffled_chain_labels,
    starts_sentence,
    token_embedding_source,
    token_texts,
)
from reasonlens.analyses.lag_probes.fit import (
    DEFAULT_LAGS,
    TARGETS,
    ChainSplit,
    LagProbeConfig,
    fit_lag_probes,
    split_chains,
)
from reasonlens.analyses.lag_probes.null import PermutationNull, permutation_null
from reasonlens.analyses.lag_probes.result import (
    METRICS,
    Estimate,
    LagProbeResult,
    LagProbes,
    LagScores,
    compare,
    score_set,
)
from reasonlens.analyses.lag_probes.rows import (
    RowReader,
    lag_targets,
    onset_counts,
    score_chains,
)
from reasonlens.analyses.lag_probes.sources import (
    ChainSource,
    FeatureSubset,
    StoreChains,
    TensorChains,
    WithLabels,
    labels_from_rows,
)

__all__ = [
    "DEFAULT_LAGS",
    "METRICS",
    "TARGETS",
    "BagOfTokens",
    "ChainSource",
    "ChainSplit",
    "Estimate",
    "FeatureSubset",
    "LagProbeConfig",
    "LagProbeResult",
    "LagProbes",
    "LagScores",
    "PermutationNull",
    "PrefixLexical",
    "RowReader",
    "StoreChains",
    "TensorChains",
    "TokenEmbeddings",
    "WithLabels",
    "bag_of_tokens_source",
    "compare",
    "fit_lag_probes",
    "lag_targets",
    "labels_from_rows",
    "onset_counts",
    "permutation_null",
    "permuted_chain_labels",
    "position_features",
    "prefix_lexical_source",
    "score_chains",
    "score_set",
    "sentence_start_labels",
    "shuffled_chain_labels",
    "split_chains",
    "starts_sentence",
    "token_embedding_source",
    "token_texts",
]

"""Analyses: extraction rate (logit lens), information flow, key masking, probes; the causal
toolkit: directions (difference in means) and their selection, steering, ablation, patching,
similarity (CKA)."""

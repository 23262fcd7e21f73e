"""Analyses: extraction rate (logit lens), information flow, key masking, probes."""

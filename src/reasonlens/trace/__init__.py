"""Trace: capture and change activations at canonical sites; the activation store on disk."""

from reasonlens.trace.capture import Activations, CaptureStats, capture, run_with_cache
from reasonlens.trace.hooks import site_hooks
from reasonlens.trace.inputs import JsonlInputs, TraceInput
from reasonlens.trace.interventions import (
    Add,
    Intervention,
    ProjectOut,
    Replace,
    Scale,
    Zero,
    intervene,
    knockout_mask,
    zero_keys,
)
from reasonlens.trace.sites import SiteRef, parse_sites, resolve_sites
from reasonlens.trace.store import ActivationStore

__all__ = [
    "ActivationStore",
    "Activations",
    "Add",
    "CaptureStats",
    "Intervention",
    "JsonlInputs",
    "ProjectOut",
    "Replace",
    "Scale",
    "SiteRef",
    "TraceInput",
    "Zero",
    "capture",
    "intervene",
    "knockout_mask",
    "parse_sites",
    "resolve_sites",
    "run_with_cache",
    "site_hooks",
    "zero_keys",
]

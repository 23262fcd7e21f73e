"""Site addresses: `layers.12.attn_out`, with `*`, ranges (`0-5`) and lists (`0,4,8`) for layers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reasonlens.errors import UserError, suggest
from reasonlens.models.architectures import SITES
from reasonlens.models.loading import LoadedModel

_ADDRESS = re.compile(r"layers\.(?P<layers>[^.]+)\.(?P<site>[a-z_]+)")


@dataclass(frozen=True, order=True)
class SiteRef:
    """One site in one layer. Sorting gives the order in which sites fire in a forward pass."""

    layer: int
    order: int
    site: str

    @property
    def name(self) -> str:
        return f"layers.{self.layer}.{self.site}"

    def __str__(self) -> str:
        return self.name


def site_ref(layer: int, site: str) -> SiteRef:
    return SiteRef(layer, SITES.index(site), site)


def parse_sites(spec: str | list[str], n_layers: int) -> list[SiteRef]:
    """Expand site addresses into sorted, de-duplicated SiteRefs, checking layers and names.

    Accepts a list, or one string of addresses separated by spaces or semicolons, e.g.
    `"layers.*.resid_post; layers.0-3.attn_out"`.
    """
    items = spec if isinstance(spec, list) else [s for s in re.split(r"[;\s]+", spec) if s]
    if not items:
        raise UserError(f"no sites given; example: layers.*.resid_post (sites: {', '.join(SITES)})")
    refs: set[SiteRef] = set()
    for item in items:
        match = _ADDRESS.fullmatch(item.strip()) if isinstance(item, str) else None
        if not match:
            raise UserError(
                f"bad site address {item!r}: expected layers.<L>.<site>, where <L> is a layer "
                f"(0-{n_layers - 1}), '*', a range like 0-5 or a list like 0,4,8 and <site> is "
                f"one of {', '.join(SITES)}"
            )
        site = match["site"]
        if site not in SITES:
            raise UserError(
                f"unknown site {site!r} in {item!r}{suggest(site, SITES)}; "
                f"valid: {', '.join(SITES)}"
            )
        for layer in _parse_layers(match["layers"], n_layers, item):
            refs.add(site_ref(layer, site))
    return sorted(refs)


_NUMBER = re.compile(r"[0-9]{1,9}")


def _parse_layers(text: str, n_layers: int, item: str) -> list[int]:
    if text == "*":
        return list(range(n_layers))
    layers: list[int] = []
    for part in text.split(","):
        bounds = part.split("-")
        if len(bounds) > 2 or not all(_NUMBER.fullmatch(b) for b in bounds):
            raise UserError(
                f"bad layer {part!r} in {item!r}: use a number, '*', a range (0-5) or a list (0,4)"
            )
        numbers = [int(b) for b in bounds]
        bad = [n for n in numbers if not n < n_layers]
        if bad:
            raise UserError(
                f"layer {bad[0]} does not exist in {item!r}: "
                f"the model has {n_layers} layers (0-{n_layers - 1})"
            )
        first, last = numbers[0], numbers[-1]
        if first > last:
            raise UserError(
                f"reversed layer range {part!r} in {item!r}: write the lower layer first "
                f"({last}-{first})"
            )
        layers.extend(range(first, last + 1))
    return layers


def resolve_sites(model: LoadedModel, spec: str | list[str] | list[SiteRef]) -> list[SiteRef]:
    """Sites for this model, from addresses or SiteRefs."""
    if isinstance(spec, list) and spec and all(isinstance(s, SiteRef) for s in spec):
        for ref in spec:
            if not 0 <= ref.layer < model.n_layers:
                raise UserError(f"layer {ref.layer} does not exist: the model has {model.n_layers}")
        return sorted(set(spec))
    return parse_sites(spec, model.n_layers)  # type: ignore[arg-type]

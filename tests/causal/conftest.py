"""Tiny models with a planted direction, for the causal toolkit's known-answer tests.

The planted model is a tiny random Llama whose residual dimension K is written by nothing
(its embedding column and every o_proj/down_proj row are zero) except the trigger token A,
whose embedding is token B's plus C along K. Prompts ending in A and in B therefore differ at
the last position by exactly C·e_K at the input of layer 0, and the residual stream carries
that difference to the end. The unembedding row of token X reads dimension K only, so the
logit of X measures "how much of the direction is present"."""

from dataclasses import dataclass

import pytest
import torch

from reasonlens.models.loading import LoadedModel
from reasonlens.models.tiny import tiny_model


@dataclass
class Planted:
    model: LoadedModel
    k: int  # the planted residual dimension
    a: int  # trigger token (carries the direction)
    b: int  # its twin without it
    x: int  # the token whose logit reads the direction
    c: float

    @property
    def direction(self) -> torch.Tensor:
        r = torch.zeros(self.model.d_model, dtype=torch.float64)
        r[self.k] = 1.0
        return r

    def prompts(self, n: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
        """n random prefixes, ending in A and (the same prefixes) in B."""
        gen = torch.Generator().manual_seed(seed)
        prefixes = [
            torch.randint(
                20, 200, (int(torch.randint(4, 9, (1,), generator=gen)),), generator=gen
            ).tolist()
            for _ in range(n)
        ]
        return [p + [self.a] for p in prefixes], [p + [self.b] for p in prefixes]


def planted_model(n_layers: int = 4, k: int = 5, c: float = 3.0, arch: str = "llama") -> Planted:
    model = tiny_model(arch, n_layers=n_layers)
    hf = model.hf
    a, b, x = 10, 11, 12
    with torch.no_grad():
        embed = hf.get_input_embeddings().weight
        embed[:, k] = 0
        for layer in model.layers:
            layer.get_submodule(model.arch.attn_proj).weight[k] = 0
            layer.get_submodule(model.arch.mlp_proj).weight[k] = 0
        embed[a] = embed[b]
        embed[a, k] = c
        head = model.unembed.weight
        head[x] = 0
        head[x, k] = 20.0
    return Planted(model, k, a, b, x, c)


@pytest.fixture(scope="module")
def planted():
    torch.set_num_threads(1)
    return planted_model()

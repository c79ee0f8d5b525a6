"""Decoder backbones (GPT-2, GPT-NeoX/Pythia, Llama/SmolLM2, Qwen2) for sequence classification.

What a decoder needs that an encoder does not, in one place:

- **The last real token.** A causal model's only summary of the whole text is the state of its last
  token, so decoders pool `last` (bench.models.backbones.pool): the rightmost position the attention mask
  marks, which with right padding is the last real token. transformers' `*ForSequenceClassification`
  finds it as the rightmost token whose id is not `config.pad_token_id`; the two agree whenever the
  pad id occurs only as padding (the tokenizers here never emit it inside a text).
- **A pad token.** GPT-2, Pythia and SmolLM2 define none, and transformers' classifier then refuses
  batches > 1. `set_padding` gives the tokenizer its eos as pad when it has no pad (the usual recipe),
  pads on the right, and writes the tokenizer's pad id into the config when the config has none, so a
  transformers user of the same config pools the same token. It runs after the backbone is built,
  as `model.config.pad_token_id = tokenizer.pad_token_id` does in transformers' own recipes: the
  embedding table is built as the checkpoint's (a pad id at construction would zero the eos row).
- **No segment ids.** Decoders take none (GPT-2 would add `wte[token_type_id]` to every token), so
  `takes_token_type_ids` is False whatever tokenizer is used.
- **Where the decoder block's sublayer outputs are** (bottleneck adapters, Houlsby placement: after
  the attention output projection and after the feed-forward output projection, before the residual
  add): per architecture in `DECODERS`, since each family names them differently.

Architectures not in `DECODERS` are treated as encoders.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError


@dataclass(frozen=True)
class DecoderLayout:
    """Module names inside one decoder layer (relative to the layer)."""

    attention_out: str   # the attention block's output projection
    ffn_out: str         # the feed-forward block's output projection
    norms: tuple[str, ...]  # the layer's own norms (adapter.train_layernorm)


_LLAMA = DecoderLayout("self_attn.o_proj", "mlp.down_proj", ("input_layernorm", "post_attention_layernorm"))

#: model_type -> layout. The families peft maps LoRA targets for and transformers builds
#: `*ForSequenceClassification` with a bias-free `score` head for.
DECODERS: dict[str, DecoderLayout] = {
    "gpt2": DecoderLayout("attn.c_proj", "mlp.c_proj", ("ln_1", "ln_2")),
    "gpt_neox": DecoderLayout("attention.dense", "mlp.dense_4h_to_h", ("input_layernorm", "post_attention_layernorm")),
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA,
}


#: model types whose projections are transformers' Conv1D (weight stored transposed: peft's fan_in_fan_out)
CONV1D_TYPES = ("gpt2",)


def uses_conv1d(config) -> bool:
    return model_type(config) in CONV1D_TYPES


def model_type(config) -> str:
    return str(getattr(config, "model_type", ""))


def is_decoder(config) -> bool:
    return model_type(config) in DECODERS


def layout(config) -> DecoderLayout:
    return DECODERS[model_type(config)]


def decoder_layers(backbone):
    """The backbone's decoder layers (GPT-2 `h`, the others `layers`), through a peft wrapper."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    layers = getattr(base, "h", None)
    if layers is None:
        layers = getattr(base, "layers", None)
    if layers is None:
        raise ConfigError(f"{type(base).__name__}: no decoder layers (`h` or `layers`) found")
    return list(layers)


def sublayer_outputs(backbone, config):
    """Yield (kind, layer, projection) for each decoder layer's attention and feed-forward output
    projection: `kind` is "attention" or "ffn", as for the encoder blocks in bench.methods.adapter."""
    spec = layout(config)
    for layer in decoder_layers(backbone):
        yield "attention", layer, layer.get_submodule(spec.attention_out)
        yield "ffn", layer, layer.get_submodule(spec.ffn_out)


def set_padding(config, tokenizer) -> str:
    """Right padding with a pad token the config knows (see the module docstring). Returns what was
    done, for the log. Refuses a tokenizer with neither a pad nor an eos token."""
    done = []
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"model.tokenizer: {type(tokenizer).__name__} has neither a pad nor an eos token; "
                              "a decoder needs one to pad batches: give a tokenizer with one")
        tokenizer.pad_token = tokenizer.eos_token
        done.append(f"tokenizer pads with its eos token {tokenizer.eos_token!r} (id {tokenizer.pad_token_id})")
    tokenizer.padding_side = "right"
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = int(tokenizer.pad_token_id)
        done.append(f"config.pad_token_id set to {config.pad_token_id}")
    elif int(config.pad_token_id) != int(tokenizer.pad_token_id):
        token = tokenizer.convert_ids_to_tokens(int(config.pad_token_id))
        if token is None or int(config.pad_token_id) >= len(tokenizer):
            raise ConfigError(f"model.tokenizer: pads with id {tokenizer.pad_token_id} but the model config's "
                              f"pad_token_id is {config.pad_token_id}, which this tokenizer does not have")
        tokenizer.pad_token = token
        done.append(f"tokenizer pads with the config's pad_token_id {config.pad_token_id}")
    return "; ".join(done) or f"pad id {config.pad_token_id} (config and tokenizer agree)"

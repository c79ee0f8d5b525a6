"""Data-pass initialisations: the adapter starts from statistics of the cell's training rows (never selection
or dev rows), which the training loop passes once before the optimizer is built (bench/training/loop.py,
timed apart as train.data_pass_s); each process computes them alone (no gathering across data-parallel
ranks: they hold the same rows here).

- EVA reads the wrapped model's activations;
- CorDA and LoRA-GA, whose peft preprocessing (`preprocess_corda`, `preprocess_loraga`) must see the base
  before it is wrapped: `apply` wraps with a plain LoRA placeholder of the same shapes (B = 0, so the base
  and outputs stay as they are, a delta loaded onto it later sees the original base, and the parameter
  count is the real adapter's); the data pass unwraps it, preprocesses, and wraps again. Both rewrite
  the base (bench/methods/quirks/base_rewrite.py).
"""
from __future__ import annotations

from typing import ClassVar

from bench.methods.quirks.base_rewrite import RewritesBase
from bench.methods.quirks.registry import Quirk, register_quirk


@register_quirk(peft_type="lora", init="eva")
class EVA(Quirk):
    """EVA (Paischer et al. 2024): LoRA's A from an SVD of the training rows' activations, ranks
    redistributed by explained variance."""

    nested_configs: ClassVar[dict[str, str]] = {"eva_config": "peft.EvaConfig"}

    def initialize_from_data(self, model, batches) -> None:
        from peft import initialize_lora_eva_weights

        initialize_lora_eva_weights(model.backbone, dataloader=batches, gather_distributed_inputs=False,
                                    show_progress_bar=False)

    def load_backbone(self, model, folder) -> bool:
        """The base is untouched, but the saved ranks (rank_pattern) differ from the built ones: the built
        adapter is dropped and rebuilt as saved."""
        from peft import PeftModel

        base = model.backbone.unload()
        model.backbone = PeftModel.from_pretrained(base, str(folder), is_trainable=True)
        return True


class BeforeWrap(RewritesBase):
    """A placeholder adapter until the data pass, which preprocesses the unwrapped base (`preprocess`)."""

    def wrap_config(self, cfg):
        cfg.init_lora_weights, cfg.corda_config, cfg.lora_ga_config = True, None, None
        return cfg

    def after_apply(self, model) -> None:
        return None  # the initial adapter is the one the data pass builds

    def initialize_from_data(self, model, batches) -> None:
        from peft import get_peft_model
        from peft.tuners.lora import LoraModel

        base = model.backbone.unload()  # the placeholder (B = 0) dropped: the original base
        model.backbone = base
        cfg = self.tuner.peft_config(base.config)
        if cfg.target_modules is None:  # peft fills its default targets only inside get_peft_model
            cfg.target_modules = set(LoraModel.target_module_mapping[base.config.model_type])
        self.preprocess(model, base, cfg, batches)
        model.backbone = get_peft_model(base, cfg)
        self.keep_initial_adapter(model)

    def preprocess(self, model, base, cfg, batches) -> None:
        raise NotImplementedError


@register_quirk(peft_type="lora", init="corda")
class CorDA(BeforeWrap):
    """CorDA (Yang et al. 2024): LoRA from the weights' SVD under the training rows' input covariance, collected
    in one forward pass, one unpadded row at a time (its hook reads one sequence per call)."""

    nested_configs: ClassVar[dict[str, str]] = {"corda_config": "peft.tuners.lora.config.CordaConfig"}

    def preprocess(self, model, base, cfg, batches) -> None:
        from peft.tuners.lora.corda import preprocess_corda

        def run_model():
            for inputs in batches.single_rows():
                base(**inputs)

        preprocess_corda(base, cfg, run_model=run_model)


@register_quirk(peft_type="lora", init="lora_ga")
class LoraGA(BeforeWrap):
    """LoRA-GA (Wang et al. 2024): LoRA from the SVD of the task loss's gradient of each target weight,
    averaged over the training rows' batches (peft's `estimate_gradients`, in train mode, with the cell's head)."""

    nested_configs: ClassVar[dict[str, str]] = {"lora_ga_config": "peft.tuners.lora.config.LoraGAConfig"}

    def preprocess(self, model, base, cfg, batches) -> None:
        from peft.tuners.lora.loraga import preprocess_loraga

        head = [p for p in model.head.parameters() if p.requires_grad]
        for p in head:  # only the target weights' gradients are read; the head's would be left behind
            p.requires_grad_(False)

        def train_step():
            for inputs, labels in batches.labelled():
                batches.loss(model(**inputs), labels).backward()

        try:
            preprocess_loraga(base, cfg, train_step=train_step)
        finally:
            for p in head:
                p.requires_grad_(True)

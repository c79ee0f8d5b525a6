"""Tuner quirks: what a generic peft tuner needs beyond `get_peft_model`, one registered piece per module
(bench/methods/quirks/registry.py says what a piece declares and which hooks it may override).

- adalora: AdaLoRA's rank budget (total_step, rank allocation, orthogonal regulariser, reload at the
  ranks the budget left);
- data_init: EVA, CorDA and LoRA-GA, initialised from a pass over the cell's training rows;
- base_rewrite: PiSSA, OLoRA (and CorDA, LoRA-GA): the base keeps the residual, the saved delta is
  peft's conversion to a plain LoRA on the original base;
- optimizers: LoRA+ and LoRA-FA, peft's optimizer factories;
- conv1d: the tuners peft implements for nn.Linear but not for GPT-2's Conv1D.
"""
from bench.methods.quirks.registry import Quirk, quirks_for, register_quirk

__all__ = ["Quirk", "quirks_for", "register_quirk"]

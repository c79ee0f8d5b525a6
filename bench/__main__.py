import os

# Before torch is imported: torch.cuda.is_available() then asks NVML instead of starting CUDA in this
# (parent) process, so that the cells forked from it can still use the GPU.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

from bench.cli import main

main()

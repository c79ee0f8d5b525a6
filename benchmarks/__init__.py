"""The harness's own benchmarks and validity checks: per-step overhead, a cell against a Trainer script,
the accuracy of its measurements, A/A runs of the gate and the inference timer; raw outputs in
benchmarks/results/. Run from the repository root as modules (`python -m benchmarks.bench_trainer`),
so that they import `bench` and each other without editing sys.path. `make bench` runs the main ones."""

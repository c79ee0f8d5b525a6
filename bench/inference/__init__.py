"""What a finetuned model costs after training: latency and throughput against the base model, merging,
extra length; timing rounds that stop when precise; one measurement per structure, cached.
"""

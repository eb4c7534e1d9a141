"""Training: optimisers, the trainer loop, run records and experiment orchestration."""

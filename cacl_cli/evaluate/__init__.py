"""The evaluation engines: linear probe, fine-tuning, label propagation, similarity maps."""

"""Training engines: contrastive pretraining, fine-tuning, feature extraction."""

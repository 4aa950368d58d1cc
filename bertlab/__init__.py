"""bertlab: configuration-driven BERT pretraining and fine-tuning."""

__version__ = "0.1.0"

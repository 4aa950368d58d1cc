"""Extractive question answering (SQuAD v1.1 / v2.0), one module per job.

- `read`: the official JSON files and the Hub rows, with the rules for training and
  evaluation files.
- `windows`: doc-stride windows of question + context, their arrays, dataset and collate.
- `decode`: from window logits to one answer per question (n-best, max context, null score).
- `score`: the official v1.1 / v2.0 evaluation, and the files `bertlab-squad-eval` reads.
- `datamodule`: `QuestionAnsweringDataModule`, which provides the data and nothing else.

The LightningModule is `bertlab.tasks.qa.QuestionAnsweringModule`; its metric is
`bertlab.metrics.SquadMetric`.
"""

"""Evaluation protocols: LFW verification (``verification``, ``lfw``), k-fold cross-validation as Adience
(``cross_validation``), top-1 and confusion matrices (``classification``), continual-learning metrics
(``continual``) and the model-size report (``model_size``)."""

"""Stories defined by files, scored without retraining (see ``serving/stories/scorer.py``)."""

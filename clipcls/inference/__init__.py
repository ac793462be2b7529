"""Using a trained model without Lightning: checkpoint files, loading, scoring and the Predictor."""

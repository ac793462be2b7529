"""Writing a trained model out for deployment."""

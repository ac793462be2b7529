"""Training on PyTorch Lightning: the LightningModule, data module, callbacks, Trainer and a run."""

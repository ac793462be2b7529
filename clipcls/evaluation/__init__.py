"""Scoring a model on labelled images: metrics, plots, the HTML report and zero-shot baselines."""

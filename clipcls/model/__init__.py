"""Model parts: CLIP loading, the tiny offline CLIP, heads, the loss and the classifier."""

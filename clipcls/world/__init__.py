"""A procedural image-caption world for pretraining a miniature CLIP (see scene.py, render.py)."""

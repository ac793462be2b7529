"""`clipcls audit`: what is wrong with a labelled image folder before a model is trained on it.

One streaming pass reads every file (hashes, perceptual hash, size, contrast), one batched pass
embeds every readable image with a CLIP model (cached beside the output), and the checks read
those: files and classes (`files`), duplicates and train/val leakage (`duplicates`), likely label
errors from cleanlab on a cross-validated linear probe (`labels`), and the class descriptions
(`descriptions`). `run` ties them together; `report` writes audit.json, audit.html and the CSVs.
"""

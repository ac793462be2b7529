"""Data: class folders, descriptions, image loading, transforms, samplers and the demo set."""

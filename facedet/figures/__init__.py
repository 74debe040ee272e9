"""Commands that draw the figures of doc_images/ from trained checkpoints (one module per rung)."""

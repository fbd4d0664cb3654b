"""The multi-seed pruning study on CIFAR-10: spec (what runs), run (resumable, one JSON per run), render."""

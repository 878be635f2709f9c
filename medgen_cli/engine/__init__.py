"""The shared engine: run directories, checkpoints, the trainer and inference loading."""

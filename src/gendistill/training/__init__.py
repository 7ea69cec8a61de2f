"""What a training run is built on: the one training loop, its checkpoints, experiment tracking and the
optimizer/schedule recipes per model family."""

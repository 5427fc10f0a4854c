"""The chain: hash chain over every stored event, signed checkpoints, verification."""

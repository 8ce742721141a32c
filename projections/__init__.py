"""Read models and offline analytics folded from a trace."""

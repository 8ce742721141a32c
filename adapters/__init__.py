"""The edges: exchange venues (ccxt, the simulated exchange), watchers and the CLI."""

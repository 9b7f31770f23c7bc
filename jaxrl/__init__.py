"""jaxrl: JAX-native, high-throughput trainer for trading agents, judged by a real-data backtest gate."""

__version__ = "0.1.0"

"""pytest-neuronprobe: interpretability analyses of trained neuron probe heads as pytest assertions."""

__version__ = "0.1.0"

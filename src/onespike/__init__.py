"""onespike: convert trained PyTorch networks to spiking networks and count what they cost.

The pipeline, one function per stage::

    model, _ = onespike.load_module("net.py:Net", weights="w.pt")  # or model.onnx, or yours
    graph = onespike.extract(model, example_input)
    graph = onespike.normalize(graph, calibration_batches)
    net = onespike.convert(graph, onespike.TTFSConfig(steps=16))
    result = onespike.simulate(net, images)              # closed_form, or method="stepped"
    ops = onespike.count_ops(net, result)                 # vs onespike.count_ops(graph, images)
    energy = onespike.estimate_energy(ops)
    tuned = onespike.finetune_stdb(net, train_data)      # HybridConfig networks: STDB
    cost = onespike.hardware.run(net, result)            # cycles, latency, energy, power
"""

from onespike import evaluate, hardware
from onespike.convert import HybridConfig, RateConfig, TTFSConfig, convert
from onespike.errors import (
    CalibrationWarning,
    ChecksumError,
    CodeRangeError,
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    InvalidGraphError,
    MissingFileError,
    ModelSourceError,
    OnespikeError,
    ShapeError,
    UnsafeFileError,
    UnsupportedLayerError,
)
from onespike.graph import Graph, GraphNet, run_graph
from onespike.metrics import (
    ENERGY_MODELS,
    EnergyModel,
    EnergyReport,
    OpsReport,
    count_ops,
    estimate_energy,
)
from onespike.network import SpikingNetwork
from onespike.nir_io import from_nir, to_nir
from onespike.normalize import normalize
from onespike.onnx_io import from_onnx
from onespike.optimize import TTFSAwareNet, optimize_for_ttfs
from onespike.simulate import SimResult, simulate
from onespike.sources import load_module
from onespike.stdb import STDBConfig, finetune_stdb, load_hybrid, save_hybrid
from onespike.tracing import extract

__version__ = "0.1.0"

__all__ = [
    "ENERGY_MODELS",
    "CalibrationWarning",
    "ChecksumError",
    "CodeRangeError",
    "ConfigError",
    "CorruptFileError",
    "DatasetNotFoundError",
    "EnergyModel",
    "EnergyReport",
    "Graph",
    "GraphNet",
    "HybridConfig",
    "InvalidGraphError",
    "MissingFileError",
    "ModelSourceError",
    "OnespikeError",
    "OpsReport",
    "RateConfig",
    "STDBConfig",
    "ShapeError",
    "SimResult",
    "SpikingNetwork",
    "TTFSAwareNet",
    "TTFSConfig",
    "UnsafeFileError",
    "UnsupportedLayerError",
    "__version__",
    "convert",
    "count_ops",
    "estimate_energy",
    "evaluate",
    "extract",
    "finetune_stdb",
    "from_nir",
    "from_onnx",
    "hardware",
    "load_hybrid",
    "load_module",
    "normalize",
    "optimize_for_ttfs",
    "run_graph",
    "save_hybrid",
    "simulate",
    "to_nir",
]

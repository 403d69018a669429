"""Silicon budgets and technology tables: what one operation and one memory access cost.

A :class:`TechnologyTable` holds cited per-operation energies of one process node: integer and
floating-point adds and multiplies, the read energy of a 64-bit SRAM access at a few macro
sizes, and a leakage density. :meth:`TechnologyTable.sram_access_pj` prices an access to a
macro of any size by interpolating the published points on a log-log scale (see its
docstring for the rule and its source).

An :class:`AcceleratorConfig` is the silicon budget every architecture of
:mod:`onespike.hardware` is evaluated on: processing elements (PEs) per core, cores, SRAM
macros per core (weights, neuron state, spike-event queue) and their word widths, the clock,
the arithmetic precisions and the technology table. The three architectures read the same
config, so their costs compare on equal silicon.

Cited numbers (each also next to its constant below):

- **45 nm** (``HOROWITZ_45NM_TECH``): M. Horowitz, "Computing's energy problem (and what we can
  do about it)", ISSCC 2014, doi 10.1109/ISSCC.2014.6757323. Integer add 0.03 pJ (8 bit),
  0.1 pJ (32 bit); multiply 0.2 pJ (8 bit), 3.1 pJ (32 bit); float add 0.4 pJ (16 bit),
  0.9 pJ (32 bit); float multiply 1.1 pJ (16 bit), 3.7 pJ (32 bit); 64-bit SRAM read 10 pJ
  (8 KB), 20 pJ (32 KB), 100 pJ (1 MB).
- **7 nm** (``JOUPPI_7NM_TECH``): N. P. Jouppi et al., "Ten Lessons From Three Generations
  Shaped Google's TPUv4i", ISCA 2021, doi 10.1109/ISCA52012.2021.00010, Table 2 (Horowitz's
  table updated to 7 nm): integer add 0.007 pJ (8 bit), 0.03 pJ (32 bit); integer multiply
  0.07 pJ (8 bit); float add 0.16 pJ (16 bit); float multiply 0.34 pJ (16 bit), 1.31 pJ
  (32 bit); 64-bit SRAM read 7.5 pJ (8 KB), 8.5 pJ (32 KB), 14 pJ (1 MB). Only the entries
  that two independent public transcriptions of that table agree on are included; the
  table's other entries are left out rather than guessed.
- **Leakage** (both tables): neither table above publishes leakage. onespike uses the one
  published leakage measurement of a digital neuromorphic chip it could source: Frady et al.,
  "Neuromorphic Nearest-Neighbor Search Using Intel's Pohoiki Springs", arXiv 2004.12691
  (NICE 2020), Table 1: 3.34 W of static power on a 32-chip Loihi board, i.e. 104.4 mW per
  chip; Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
  IEEE Micro 2018, doi 10.1109/MM.2018.112130359: 33 MB of SRAM per chip, and the paper notes
  that almost all leakage is in the SRAM-dominated neuromorphic cores. Hence 104.4 / 33 =
  3.16 mW per MB of SRAM (logic leakage folded in). It is a 14 nm figure, used for both
  tables as an order of magnitude; static energy is reported separately so it can be judged
  or dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from onespike.errors import ConfigError

__all__ = [
    "ARCHITECTURES",
    "HOROWITZ_45NM_TECH",
    "JOUPPI_7NM_TECH",
    "LOIHI_LEAKAGE_MW_PER_MB",
    "TECHNOLOGIES",
    "XNOR_SRAM_COLUMN_PJ",
    "XNOR_SRAM_ROWS",
    "AcceleratorConfig",
    "Architecture",
    "CoreMapping",
    "TechnologyTable",
    "WeightDataflow",
]

Architecture = Literal["ttfs-accelerator", "rate-core", "dense-ann", "in-memory"]
ARCHITECTURES: tuple[str, ...] = ("ttfs-accelerator", "rate-core", "dense-ann", "in-memory")
CoreMapping = Literal["tiled", "pipelined"]
WeightDataflow = Literal["streamed", "stationary"]

# Yin, Jiang, Seo, Seok, "XNOR-SRAM: In-Memory Computing SRAM Macro for Binary/Ternary Deep
# Neural Networks", IEEE JSSC 55(6), 2020, doi 10.1109/JSSC.2019.2963616, abstract: 403 TOPS/W
# for ternary XNOR-and-accumulate operations (65 nm, 0.6 V), all 256 rows of a column
# accumulated at once on the read bitline and digitised by a column-multiplexed 11-level
# flash ADC. Counting a multiply and an add per cell (2 operations), one 256-row column
# evaluation with its conversion costs 2 * 256 / 403e12 J = 1.27 pJ; the abstract gives no
# split between bitcells and ADC, so the ADC's share is inside this figure.
XNOR_SRAM_ROWS = 256
XNOR_SRAM_COLUMN_PJ = 2 * XNOR_SRAM_ROWS / 403e12 * 1e12
_PRECISIONS = ("int8", "int32", "fp16", "fp32")


@dataclass(frozen=True)
class TechnologyTable:
    """Energy per operation and per SRAM access of one process node, in picojoules.

    Attributes:
        name: short identifier (``"45nm"``).
        node_nm: feature size.
        add_pj: energy of one add (an accumulate or a comparison) by precision
            (``"int8"``, ``"int32"``, ``"fp16"``, ``"fp32"``); only published entries.
        mult_pj: energy of one multiply by precision; only published entries.
        sram_read_pj: ``((size_kb, pj), ...)``: energy of one access of ``sram_word_bits``
            bits to an SRAM macro of ``size_kb`` kilobytes, ascending in size.
        sram_word_bits: width of the access the SRAM points are quoted for.
        leakage_mw_per_mb: static power per megabyte of on-chip SRAM (logic folded in).
        source: where the numbers come from.
    """

    name: str
    node_nm: float
    add_pj: Mapping[str, float]
    mult_pj: Mapping[str, float]
    sram_read_pj: tuple[tuple[float, float], ...]
    sram_word_bits: int
    leakage_mw_per_mb: float
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("TechnologyTable.name must not be empty")
        for table_name in ("add_pj", "mult_pj"):
            table = getattr(self, table_name)
            for key, value in table.items():
                if key not in _PRECISIONS:
                    raise ConfigError(
                        f"TechnologyTable.{table_name} key {key!r} is not one of {_PRECISIONS}"
                    )
                if not value > 0:
                    raise ConfigError(f"TechnologyTable.{table_name}[{key!r}] must be > 0")
        points = self.sram_read_pj
        if not points:
            raise ConfigError("TechnologyTable.sram_read_pj needs at least one (size_kb, pj)")
        sizes = [s for s, _ in points]
        if any(s <= 0 or e <= 0 for s, e in points) or sizes != sorted(set(sizes)):
            raise ConfigError(
                "TechnologyTable.sram_read_pj must be positive (size_kb, pj) pairs with "
                "strictly increasing sizes"
            )
        if self.sram_word_bits < 1:
            raise ConfigError("TechnologyTable.sram_word_bits must be >= 1")
        if not self.leakage_mw_per_mb >= 0:
            raise ConfigError("TechnologyTable.leakage_mw_per_mb must be >= 0")

    def int_add_pj(self, bits: int) -> float:
        """Energy of an integer add ``bits`` wide: linear in the width between the table's
        published int8 and int32 adds (a ripple-carry adder's energy grows with its width;
        Horowitz's 0.03 and 0.1 pJ are nearly proportional to 8 and 32), extended above 32
        bits on the same line; widths under 8 bits cost what 8 bits cost (no published point
        below). onespike's rule; it needs both published points.
        """
        if "int8" not in self.add_pj or "int32" not in self.add_pj:
            raise ConfigError(
                f"the {self.name} table lacks an int8 or int32 add, so adds of other widths "
                "cannot be priced; use AcceleratorConfig(sized_codes=False)"
            )
        if bits < 1:
            raise ConfigError(f"an add needs at least 1 bit, got {bits}")
        low, high = self.add_pj["int8"], self.add_pj["int32"]
        return low + (high - low) * (max(bits, 8) - 8) / 24

    def sram_access_pj(self, size_kb: float) -> float:
        """Energy of one ``sram_word_bits``-bit access to an SRAM macro of ``size_kb`` KB.

        Horowitz (ISSCC 2014) quotes 10, 20 and 100 pJ for 8 KB, 32 KB and 1 MB: energy
        grows as a power of the size (x2 per x4 in size between 8 and 32 KB, i.e. with the
        square root, as bit lines and word lines grow with the array's side; x5 per x32
        between 32 KB and 1 MB). onespike interpolates linearly in log(size)-log(energy)
        between the published points and extends the end segments' power laws beyond them.
        """
        if not size_kb > 0:
            raise ConfigError(f"SRAM size must be > 0 KB, got {size_kb}")
        points = self.sram_read_pj
        if len(points) == 1:
            return points[0][1]
        index = 0
        while index < len(points) - 2 and size_kb > points[index + 1][0]:
            index += 1
        (s0, e0), (s1, e1) = points[index], points[index + 1]
        slope = math.log(e1 / e0) / math.log(s1 / s0)
        return e0 * (size_kb / s0) ** slope


# Frady et al., arXiv 2004.12691, Table 1: 3.34 W static on a 32-chip Loihi board; Davies et
# al. (IEEE Micro 2018): 33 MB of SRAM per Loihi chip. 3.34 W / 32 / 33 MB.
LOIHI_LEAKAGE_MW_PER_MB = 3340.0 / 32 / 33

# Horowitz, ISSCC 2014 (doi 10.1109/ISSCC.2014.6757323), 45 nm, 0.9 V.
HOROWITZ_45NM_TECH = TechnologyTable(
    name="45nm",
    node_nm=45,
    add_pj={"int8": 0.03, "int32": 0.1, "fp16": 0.4, "fp32": 0.9},
    mult_pj={"int8": 0.2, "int32": 3.1, "fp16": 1.1, "fp32": 3.7},
    sram_read_pj=((8.0, 10.0), (32.0, 20.0), (1024.0, 100.0)),
    sram_word_bits=64,
    leakage_mw_per_mb=LOIHI_LEAKAGE_MW_PER_MB,
    source=(
        "Horowitz, ISSCC 2014 (45 nm): ops and 64-bit SRAM reads; leakage 3.16 mW/MB from "
        "Loihi (Frady et al. arXiv 2004.12691; Davies et al. IEEE Micro 2018)"
    ),
)

# Jouppi et al., ISCA 2021 (doi 10.1109/ISCA52012.2021.00010), Table 2, 7 nm column.
JOUPPI_7NM_TECH = TechnologyTable(
    name="7nm",
    node_nm=7,
    add_pj={"int8": 0.007, "int32": 0.03, "fp16": 0.16},
    mult_pj={"int8": 0.07, "fp16": 0.34, "fp32": 1.31},
    sram_read_pj=((8.0, 7.5), (32.0, 8.5), (1024.0, 14.0)),
    sram_word_bits=64,
    leakage_mw_per_mb=LOIHI_LEAKAGE_MW_PER_MB,
    source=(
        "Jouppi et al., ISCA 2021, Table 2 (7 nm): ops and 64-bit SRAM reads; leakage "
        "3.16 mW/MB from Loihi (14 nm; Frady et al. arXiv 2004.12691)"
    ),
)

TECHNOLOGIES: dict[str, TechnologyTable] = {
    t.name: t for t in (HOROWITZ_45NM_TECH, JOUPPI_7NM_TECH)
}


def _positive_int(name: str, value: object, *, upper: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"AcceleratorConfig.{name} must be an integer >= 1, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"AcceleratorConfig.{name}={value} exceeds {upper}")


@dataclass(frozen=True)
class AcceleratorConfig:
    """The silicon budget: one config, three architectures priced on it.

    Attributes:
        pes: processing elements per core; each does one accumulate (or MAC) per cycle.
        cores: cores (tiles); each has ``pes`` PEs and its own SRAM macros.
        clock_hz: clock frequency.
        weight_sram_kb: weight SRAM per core (one macro; accesses are priced at its size).
        state_sram_kb: neuron-state / activation SRAM per core.
        event_sram_kb: spike-event queue SRAM per core (spike routing).
        weight_bits: bits per stored weight.
        state_bits: bits per neuron state (membrane and current).
        activation_bits: bits per ANN activation (and per analog input value).
        event_bits: bits per spike event (the source address).
        operand: precision of multiplies (weight x activation).
        accumulator: precision of adds, accumulates and threshold comparisons.
        step_cycles: fixed cycles per time step per layer (time-counter advance and
            barrier); the only cycles a layer spends when nothing happens.
        mapping: ``"tiled"``: every layer uses all cores' PEs, one layer after the other;
            ``"pipelined"``: each layer gets its own cores (at least one), spare cores go to
            the slowest layer, and layers overlap across a stream of inferences.
        tech: the technology table.
        weight_dataflow: ``"streamed"``: every synaptic event or MAC reads its weight from the
            core's weight SRAM; ``"stationary"``: each PE keeps a tile of the layer's weights
            in a local buffer of ``pe_buffer_kb`` and reads it there; the weights are loaded
            from the weight SRAM once per inference and layer (not at all when the whole
            network fits in the PE buffers: then they stay resident), and a layer larger
            than the buffers runs in tiles, its input events replayed once per tile. Applies
            to every architecture with weights in SRAM (not the crossbar's binary layers).
        pe_buffer_kb: local weight buffer per PE (``weight_dataflow="stationary"``).
        event_batching: TTFS accelerator: the events that reach a neuron in one time step
            are summed in a PE register, so the neuron's state is read and written once per
            (neuron, step) with input, not once per synaptic event.
        sized_codes: TTFS accelerator and dense array: neuron states and accumulators only as
            wide as the layer needs (the largest membrane ``(fan-in + 1) (2^(w-1) - 1) L`` of
            ``w``-bit weights and ``L``-level codes for TTFS; ``(fan-in + 1) (2^(w-1) - 1)
            (2^a - 1)`` of ``a``-bit activations for the dense array's partial sums), adds
            priced by width (:meth:`TechnologyTable.int_add_pj`), instead of ``state_bits``
            and the ``accumulator`` precision. The rate core keeps its widths (a rate
            membrane has no bound set by the code).
        crossbar_rows, crossbar_cols: the in-memory architecture's binary crossbar tiles.
        crossbar_column_pj: energy of one column evaluation of a tile, ADC included.
    """

    pes: int = 16
    cores: int = 4
    clock_hz: float = 200e6
    weight_sram_kb: float = 256.0
    state_sram_kb: float = 32.0
    event_sram_kb: float = 8.0
    weight_bits: int = 8
    state_bits: int = 24
    activation_bits: int = 8
    event_bits: int = 16
    operand: Literal["int8", "int32", "fp16", "fp32"] = "int8"
    accumulator: Literal["int8", "int32", "fp16", "fp32"] = "int32"
    step_cycles: int = 1
    mapping: CoreMapping = "tiled"
    tech: TechnologyTable = HOROWITZ_45NM_TECH
    weight_dataflow: WeightDataflow = "streamed"
    pe_buffer_kb: float = 1.0
    event_batching: bool = False
    sized_codes: bool = False
    crossbar_rows: int = XNOR_SRAM_ROWS
    crossbar_cols: int = 64
    crossbar_column_pj: float = XNOR_SRAM_COLUMN_PJ

    def __post_init__(self) -> None:
        _positive_int("pes", self.pes)
        _positive_int("cores", self.cores)
        if isinstance(self.clock_hz, bool) or not isinstance(self.clock_hz, (int, float)):
            raise ConfigError(f"AcceleratorConfig.clock_hz must be a number, got {self.clock_hz!r}")
        if not self.clock_hz > 0:
            raise ConfigError(f"AcceleratorConfig.clock_hz must be > 0, got {self.clock_hz}")
        for name in ("weight_sram_kb", "state_sram_kb", "event_sram_kb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"AcceleratorConfig.{name} must be a number > 0, got {value!r}")
        word = self.tech.sram_word_bits if isinstance(self.tech, TechnologyTable) else 64
        for name in ("weight_bits", "state_bits", "activation_bits", "event_bits"):
            _positive_int(name, getattr(self, name), upper=word)
        if isinstance(self.step_cycles, bool) or not isinstance(self.step_cycles, int):
            raise ConfigError(
                f"AcceleratorConfig.step_cycles must be an integer, got {self.step_cycles!r}"
            )
        if self.step_cycles < 0:
            raise ConfigError(f"AcceleratorConfig.step_cycles must be >= 0, got {self.step_cycles}")
        if self.mapping not in ("tiled", "pipelined"):
            raise ConfigError(
                f"AcceleratorConfig.mapping={self.mapping!r} is not one of 'tiled', 'pipelined'"
            )
        if not isinstance(self.tech, TechnologyTable):
            raise ConfigError(
                "AcceleratorConfig.tech must be a TechnologyTable, got "
                f"{type(self.tech).__name__}; built-in tables: {sorted(TECHNOLOGIES)}"
            )
        if self.operand not in self.tech.mult_pj:
            raise ConfigError(
                f"AcceleratorConfig.operand={self.operand!r}: the {self.tech.name} table has no "
                f"published multiply energy for it; use one of {sorted(self.tech.mult_pj)}"
            )
        if self.accumulator not in self.tech.add_pj:
            raise ConfigError(
                f"AcceleratorConfig.accumulator={self.accumulator!r}: the {self.tech.name} table "
                f"has no published add energy for it; use one of {sorted(self.tech.add_pj)}"
            )
        if self.weight_dataflow not in ("streamed", "stationary"):
            raise ConfigError(
                f"AcceleratorConfig.weight_dataflow={self.weight_dataflow!r} is not one of "
                "'streamed', 'stationary'"
            )
        for name in ("event_batching", "sized_codes"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"AcceleratorConfig.{name} must be True or False")
        for name in ("pe_buffer_kb", "crossbar_column_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"AcceleratorConfig.{name} must be a number > 0, got {value!r}")
        _positive_int("crossbar_rows", self.crossbar_rows)
        _positive_int("crossbar_cols", self.crossbar_cols)
        if self.sized_codes:
            self.tech.int_add_pj(8)  # refuses a table that cannot price other widths

    @property
    def total_pes(self) -> int:
        """PEs over all cores."""
        return self.pes * self.cores

    @property
    def pe_buffers_kb(self) -> float:
        """Local weight buffers over all PEs, in KB (0 with streamed weights)."""
        return self.total_pes * self.pe_buffer_kb if self.weight_dataflow == "stationary" else 0.0

    @property
    def sram_kb(self) -> float:
        """On-chip SRAM over all cores (PE weight buffers included), in KB."""
        macros = self.cores * (self.weight_sram_kb + self.state_sram_kb + self.event_sram_kb)
        return macros + self.pe_buffers_kb

    @property
    def leakage_w(self) -> float:
        """Static power of the whole budget: leakage density times SRAM."""
        return self.tech.leakage_mw_per_mb * self.sram_kb / 1024 * 1e-3

"""A minimal reader for OpenVINO IR (``model.xml`` graph + ``model.bin`` weight blob).

Enough to map the weights of a known architecture onto our own PyTorch module: each layer's
type, attributes and output shapes, the edges between ports, and every ``Const`` layer's
array (``data`` attributes ``element_type``, ``shape``, ``offset``, ``size`` index the blob).
No OpenVINO runtime is needed.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_DTYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8, "i8": np.int8}


@dataclass
class Layer:
    id: int
    name: str
    type: str
    attrs: dict[str, str]
    out_shapes: list[tuple[int, ...]]
    # input port index (in document order) -> (source layer id, source port id)
    inputs: list[tuple[int, int]] = field(default_factory=list)


class IRGraph:
    """Parsed IR: ``layers`` by id, ``consumers`` of each layer, and ``const(id)`` arrays."""

    def __init__(self, xml_path: str | Path, bin_path: str | Path | None = None):
        xml_path = Path(xml_path)
        bin_path = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
        root = ET.parse(xml_path).getroot()
        self.blob = bin_path.read_bytes()
        self.layers: dict[int, Layer] = {}
        in_ports: dict[int, list[int]] = {}
        for el in root.find("layers"):
            data = el.find("data")
            outs = el.find("output")
            ins = el.find("input")
            lid = int(el.get("id"))
            self.layers[lid] = Layer(
                id=lid,
                name=el.get("name"),
                type=el.get("type"),
                attrs=dict(data.attrib) if data is not None else {},
                out_shapes=[tuple(int(d.text) for d in p.findall("dim")) for p in (outs if outs is not None else [])],
            )
            in_ports[lid] = [int(p.get("id")) for p in (ins if ins is not None else [])]
        src: dict[tuple[int, int], tuple[int, int]] = {}
        for e in root.find("edges"):
            src[(int(e.get("to-layer")), int(e.get("to-port")))] = (int(e.get("from-layer")), int(e.get("from-port")))
        self.consumers: dict[int, list[int]] = {k: [] for k in self.layers}
        for lid, ports in in_ports.items():
            self.layers[lid].inputs = [src[(lid, p)] for p in ports]
            for s, _ in self.layers[lid].inputs:
                self.consumers[s].append(lid)

    def const(self, lid: int) -> np.ndarray:
        """The array of ``Const`` layer ``lid``, copied out of the blob."""
        layer = self.layers[lid]
        if layer.type != "Const":
            raise ValueError(f"layer {lid} ({layer.name}) is a {layer.type}, not a Const")
        a = layer.attrs
        dtype = np.dtype(_DTYPES[a["element_type"]])
        shape = [int(s) for s in a["shape"].split(",")] if a.get("shape", "").strip() else []
        arr = np.frombuffer(self.blob, dtype=dtype, count=int(a["size"]) // dtype.itemsize, offset=int(a["offset"]))
        return arr.reshape(shape).copy()

    def input_layer(self, lid: int, port: int) -> Layer:
        return self.layers[self.layers[lid].inputs[port][0]]

    def of_type(self, type_: str) -> list[Layer]:
        """Layers of one type in id order (the IR serialises layers topologically)."""
        return [self.layers[k] for k in sorted(self.layers) if self.layers[k].type == type_]

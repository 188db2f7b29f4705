"""Write a copy of a GGUF with its matrices in another type (f16, bf16 or f32), for benchmarks of the
F16/BF16 weight paths beside llama.cpp on the same file: the default model as a "full precision" file,
or a 9B-class file cut to its first N layers (the shapes of the real model, a size that fits in memory).

One-dimensional tensors (norms, biases) stay F32, as converters write them. Values are dequantized
exactly (gguf.quants.dequantize) and rounded to the target type by numpy (round to nearest even).

  python scripts/bench/retype_gguf.py IN.gguf OUT.gguf --type bf16 [--layers N]

Needs: pip install numpy gguf. Benchmark files only: never in the repo or in CI.
"""
import argparse
import re

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
from gguf.quants import dequantize, quantize

TYPES = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--type", choices=sorted(TYPES), default="f16")
    parser.add_argument("--layers", type=int, help="keep only the first N layers (block_count becomes N)")
    args = parser.parse_args()
    qtype, file_type = TYPES[args.type]

    reader = GGUFReader(args.source)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(args.output, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":
            writer.add_uint32(key, int(file_type))
            continue
        if args.layers is not None and key == f"{arch}.block_count":
            writer.add_uint32(key, args.layers)
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == GGUFValueType.ARRAY and len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), vtype, sub)

    for tensor in reader.tensors:
        match = re.match(r"blk\.(\d+)\.", tensor.name)
        if args.layers is not None and match and int(match.group(1)) >= args.layers:
            continue
        shape = tuple(int(x) for x in reversed(tensor.shape))
        values = dequantize(tensor.data, tensor.tensor_type).reshape(shape).astype(np.float32)
        if values.ndim < 2:
            writer.add_tensor(tensor.name, np.ascontiguousarray(values))
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(tensor.name, np.ascontiguousarray(values.astype(np.float16)))
        elif qtype == GGMLQuantizationType.BF16:
            raw = quantize(values, qtype)
            writer.add_tensor(tensor.name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(tensor.name, np.ascontiguousarray(values))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


if __name__ == "__main__":
    main()

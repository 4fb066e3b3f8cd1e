/**
 * Hugging Face GPTQ checkpoints (docs/formats.md §1), the layout transformers, vLLM, GPTQModel and AutoGPTQ load.
 *
 * <ul>
 *   <li>{@link org.sparkquant.format.gptq.QuantizedLinear}: one quantized linear layer (codes, fp16 scales, zero
 *       points, g_idx, bias) and its {@code dequantize()}, the weight a forward pass evaluates;</li>
 *   <li>{@link org.sparkquant.format.gptq.GptqPacking}: int32 packing of qweight / qzeros at 2, 3, 4 and 8 bits, v1
 *       and v2 zero points, and {@code packable(module, bits)};</li>
 *   <li>{@link org.sparkquant.format.gptq.GptqCheckpointWriter}: the writer (modules pulled one at a time, every
 *       other tensor copied byte for byte, sharded safetensors, config files);</li>
 *   <li>{@link org.sparkquant.format.gptq.GptqCheckpoint}: the reader, with per-module dequantized weights and
 *       per-layer {@code LayerWeights} for evaluation;</li>
 *   <li>{@link org.sparkquant.format.gptq.GptqConfig}: {@code quantization_config} / {@code quantize_config.json},
 *       including GPTQModel's {@code dynamic} rules.</li>
 * </ul>
 */
package org.sparkquant.format.gptq;
